#!/usr/bin/env bash
# On an endpoint, as root: runs `ioclab agent --appliance ...` as the
# ioclab-agent service, with what enrol.sh printed on the appliance (passed
# in the environment by the Vagrantfile's trigger). The token goes to a file
# only root reads, and reaches the agent through its environment, not its
# command line. Idempotent: the service restarts only when something changed.
# IOCLAB_INSTALL_ROOT: a staging root (then systemctl is never called), as for
# `ioclab install --root`; tests/install.rs runs it so.
set -euo pipefail

name=${1:?usage: join.sh NAME}
: "${IOCLAB_APPLIANCE:?} ${IOCLAB_FINGERPRINT:?} ${IOCLAB_ENDPOINT_TOKEN:?}"
root=${IOCLAB_INSTALL_ROOT:-/}
root=${root%/}
env_file=/etc/ioclab/agent.env
unit=$root/etc/systemd/system/ioclab-agent.service

install -d -m 0755 "$root/etc/ioclab" "$root/etc/systemd/system"
new_env=$(printf 'IOCLAB_APPLIANCE=%s\nIOCLAB_FINGERPRINT=%s\nIOCLAB_ENDPOINT_TOKEN=%s\n' \
  "$IOCLAB_APPLIANCE" "$IOCLAB_FINGERPRINT" "$IOCLAB_ENDPOINT_TOKEN")
# The agent alone: eBPF (CAP_BPF, CAP_PERFMON), and reading what other users'
# processes run to hash it (CAP_SYS_PTRACE for /proc/PID/exe, CAP_DAC_READ_SEARCH
# for files they may read and root may not).
new_unit="[Unit]
Description=ioclab endpoint agent ($name), reporting to the class appliance
After=network-online.target
Wants=network-online.target

[Service]
EnvironmentFile=$env_file
ExecStart=/usr/local/bin/ioclab agent --appliance \${IOCLAB_APPLIANCE} --fingerprint \${IOCLAB_FINGERPRINT} --name $name
Restart=on-failure
RestartSec=2s
StateDirectory=ioclab
LimitMEMLOCK=infinity
CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target"

# $(cat) drops the final newline, as the assignments above do: equal when unchanged
changed=0
if [ ! -f "$root$env_file" ] || [ "$(cat "$root$env_file")" != "$new_env" ]; then
  (umask 077 && printf '%s\n' "$new_env" >"$root$env_file")
  changed=1
fi
if [ ! -f "$unit" ] || [ "$(cat "$unit")" != "$new_unit" ]; then
  printf '%s\n' "$new_unit" >"$unit"
  changed=1
fi

if [ "$changed" = 1 ]; then
  echo "$name: ioclab-agent configured to report to $IOCLAB_APPLIANCE"
else
  echo "$name: ioclab-agent already configured to report to $IOCLAB_APPLIANCE"
fi
if [ -z "$root" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable --now ioclab-agent.service
  if [ "$changed" = 1 ]; then
    systemctl restart ioclab-agent.service
  fi
  echo "$name: systemctl status ioclab-agent"
fi
