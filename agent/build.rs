//! Compiles the eBPF programs in bpf/ with clang (CO-RE, BTF included) and
//! the host-side layout dump of bpf/events.h used by the ABI mirror test.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// eBPF objects: bpf/<name>.bpf.c -> OUT_DIR/<name>.bpf.o (sensor.bpf.c includes the program families).
const PROGRAMS: &[&str] = &["sensor"];

fn clang() -> String {
    if let Ok(c) = env::var("IOCLAB_CLANG") {
        return c;
    }
    for c in ["clang-19", "clang-18", "clang-17", "clang-16", "clang"] {
        if Command::new(c).arg("--version").output().map(|o| o.status.success()).unwrap_or(false) {
            return c.to_string();
        }
    }
    panic!(
        "\n\nioclab needs clang to compile its eBPF programs, and none was found \
         (tried clang-19, clang-18, clang-17, clang-16, clang).\n\
         Install it with:  sudo scripts/setup.sh   (or: apt-get install clang-19 libbpf-dev)\n\
         or point IOCLAB_CLANG at a clang binary.\n\n"
    );
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed: {cmd:?}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn main() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let bpf_dir = Path::new("bpf");
    let clang = clang();
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => ("x86", "x86_64-linux-gnu"),
        "aarch64" => ("arm64", "aarch64-linux-gnu"),
        other => panic!("eBPF programs are not set up for target arch {other}"),
    };
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        panic!(
            "\n\n/usr/include/bpf/bpf_helpers.h is missing: install libbpf headers with \
             `sudo scripts/setup.sh` (or: apt-get install libbpf-dev)\n\n"
        );
    }
    println!("cargo:rerun-if-env-changed=IOCLAB_CLANG");
    // every file of bpf/: the object includes several of them
    println!("cargo:rerun-if-changed=bpf");
    for entry in std::fs::read_dir(bpf_dir).expect("reading agent/bpf").flatten() {
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
    for prog in PROGRAMS {
        let src = bpf_dir.join(format!("{prog}.bpf.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        let obj = out_dir.join(format!("{prog}.bpf.o"));
        run(
            Command::new(&clang)
                .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
                .arg(format!("-D__TARGET_ARCH_{}", arch.0))
                .arg(format!("-I/usr/include/{}", arch.1))
                .arg("-Ibpf")
                .arg("-c")
                .arg(&src)
                .arg("-o")
                .arg(&obj),
            "compiling eBPF program",
        );
    }

    // Layout of the ABI structs as the C compiler sees them, for abi.rs's test.
    let layout_src = bpf_dir.join("layout.c");
    println!("cargo:rerun-if-changed={}", layout_src.display());
    let layout_bin = out_dir.join("abi-layout");
    run(
        Command::new(&clang)
            .arg(format!("-I/usr/include/{}", arch.1))
            .arg("-Ibpf")
            .arg(&layout_src)
            .arg("-o")
            .arg(&layout_bin),
        "compiling the ABI layout dump",
    );
    let out = Command::new(&layout_bin).output().expect("running the ABI layout dump");
    std::fs::write(out_dir.join("abi_layout.rs"), out.stdout).unwrap();
}
