# The two commands of README.md: `make run` and `make test` (as root).
CARGO ?= cargo
# Arguments for `ioclab serve` started by `make run`, e.g. make run ARGS="--listen 0.0.0.0:8000"
ARGS ?=

.PHONY: setup build run test bench fmt clean

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --release --locked

## Build, then start the appliance (agent, sandbox, MISP, lab, web UI); it prints where to point the browser.
run: build
	./target/release/ioclab serve $(ARGS)

## Every test: unit, property, and the live eBPF tests (they fail, not skip, under CI=true);
## first shellcheck of the scripts and `vagrant validate` of the Vagrantfile (scripts/check.sh).
test: setup
	@scripts/check.sh
	$(CARGO) test --workspace --locked

## Benchmarks: exec storm with and without the agent, IoC table load and lookups, sandbox latency and throughput, MISP correlation of a report, the web UI (SSE fan-out, pages with 100,000 events, memory), a class of 20 endpoints on one appliance (stored events/s, detection to dashboard, IoC push, CPU and memory).
bench: setup
	$(CARGO) bench --workspace --locked --bench exec_storm --bench net_storm --bench syscall_storm --bench misp_export --bench misp_store --bench misp_lookup --bench pipeline --bench ioc --bench sandbox --bench sandbox_misp --bench lab_flow --bench web --bench class_load

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
