//! Live `init_module` events: a child of the test calls init_module and
//! finit_module with a small ELF image whose `.modinfo` names the module.
//! The kernel refuses it (not a real module; on the lab machines the kernel
//! has no module support at all), and the attempt is what must be reported.

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;

use common::*;
use serde_json::Value;

/// A little-endian ELF64 image with sections `.text`, `.shstrtab` and
/// `.modinfo` (last, after the name table) holding `modinfo`.
fn module_image(modinfo: &[u8]) -> Vec<u8> {
    let names = b"\0.text\0.shstrtab\0.modinfo\0";
    let (text_name, str_name, modinfo_name) = (1u32, 7u32, 17u32);
    let mut img = vec![0u8; 64];
    img[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1]);
    img[16..18].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
    img[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    let text = (img.len(), 4);
    img.extend_from_slice(&[0xc3, 0x90, 0x90, 0x90]);
    let strtab = (img.len(), names.len());
    img.extend_from_slice(names);
    let info = (img.len(), modinfo.len());
    img.extend_from_slice(modinfo);
    while img.len() % 8 != 0 {
        img.push(0);
    }
    let shoff = img.len();
    for (name, (off, size)) in [(0, (0, 0)), (text_name, text), (str_name, strtab), (modinfo_name, info)] {
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(&name.to_le_bytes());
        h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
        h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
        img.extend_from_slice(&h);
    }
    img[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    img[52..54].copy_from_slice(&64u16.to_le_bytes());
    img[58..60].copy_from_slice(&64u16.to_le_bytes());
    img[60..62].copy_from_slice(&4u16.to_le_bytes());
    img[62..64].copy_from_slice(&2u16.to_le_bytes());
    img
}

fn module_event(agent: &LiveAgent, pid: u32, syscall: &'static str) -> Value {
    agent.wait_for(syscall, move |e| is("init_module", pid)(e) && e["data"]["syscall"] == syscall)
}

#[test]
fn init_module_and_finit_module_attempts_are_reported_with_name_and_args() {
    let dir = tempfile::tempdir().unwrap();
    let ko = dir.path().join("on-disk-file-name.ko");
    std::fs::write(&ko, module_image(b"license=GPL\0\0\0name=ioclab_from_file\0vermagic=x\0")).unwrap();
    // name= after 5 KB of other entries, and a decoy "name=" inside a long entry
    // exactly where a 63-byte read of it ends
    let mut modinfo = format!("description={}name=decoy_not_an_entry\0", "d".repeat(51)).into_bytes();
    for i in 0..150 {
        modinfo.extend_from_slice(format!("alias=pci:v0000{i:04}d*sv*sd*bc*sc*i*\0\0\0").as_bytes());
    }
    assert!(modinfo.len() > 4096);
    modinfo.extend_from_slice(b"name=ioclab_in_memory\0vermagic=6.18\0");
    let image = module_image(&modinfo);
    let Some(agent) = start(config()) else { return };

    // in a child: the agent does not report its own process, which is the test's
    let pid = in_child(|| {
        let params = CString::new("verbose=1 mode=\"a b\"").unwrap();
        // SAFETY: init_module with a valid buffer and string; the kernel refuses the image.
        let r = unsafe { libc::syscall(libc::SYS_init_module, image.as_ptr(), image.len(), params.as_ptr()) };
        assert_eq!(r, -1, "init_module of a fake image must fail");
        let file = std::fs::File::open(&ko).unwrap();
        let params = CString::new("debug=2").unwrap();
        // SAFETY: finit_module with an open fd and a valid string.
        let f = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        assert_eq!(f, -1, "finit_module of a fake module must fail");
    });

    let ev = module_event(&agent, pid, "init_module");
    assert_eq!(ev["info"]["event"]["id"], 20);
    let d = &ev["data"];
    assert_eq!(d["module_name"], "ioclab_in_memory", "{d}");
    assert_eq!(d["args"], "verbose=1 mode=\"a b\"");
    assert_eq!(d["loaded"], false, "the kernel refused it");
    assert_eq!(d["exe"]["path"], std::env::current_exe().unwrap().to_str().unwrap(), "a forked child runs the test");

    let ev = module_event(&agent, pid, "finit_module");
    let d = &ev["data"];
    assert_eq!(d["module_name"], "ioclab_from_file", "name from the file's .modinfo, not its file name: {d}");
    assert_eq!(d["args"], "debug=2");
    assert_eq!(d["loaded"], false);
}

#[test]
fn module_without_modinfo_is_named_by_its_file_and_disabled_means_silent() {
    let dir = tempfile::tempdir().unwrap();
    let ko = dir.path().join("stripped_mod.ko");
    std::fs::write(&ko, b"not an ELF file at all").unwrap();
    let Some(agent) = start(config()) else { return };
    let pid = in_child(|| {
        let file = std::fs::File::open(&ko).unwrap();
        // SAFETY: finit_module with an open fd and an empty parameter string.
        assert_eq!(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) }, -1);
    });
    let ev = module_event(&agent, pid, "finit_module");
    assert_eq!(ev["data"]["module_name"], "stripped_mod");
    assert_eq!(ev["data"]["args"], "");
    drop(agent);

    let mut c = config();
    c.events.get_mut("init_module").unwrap().enable = false;
    let Some(agent) = start(c) else { return };
    let pid = in_child(|| {
        let file = std::fs::File::open(&ko).unwrap();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) }, -1);
    });
    // the child's exit_group is written after its syscalls' records: once it is there, nothing else is coming
    agent.wait_for("exit_group of the child", is("exit_group", pid));
    let (_, events) = agent.stop();
    assert!(!events.iter().any(|e| name(e) == "init_module"), "init_module is disabled");
}
