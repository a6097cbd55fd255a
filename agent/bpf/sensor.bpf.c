// SPDX-License-Identifier: GPL-2.0
/*
 * The one eBPF object of the agent. Each family of programs lives in its own
 * file, included here so that all of them share one ring buffer, one loss
 * counter and one scratch area (separate objects would each get their own
 * maps). Userspace attaches a program only when an event it produces is
 * enabled (agent/src/bpf/mod.rs).
 */
#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#include "process.c"
#include "network.c"
#include "files.c"
