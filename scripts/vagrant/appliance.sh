#!/usr/bin/env bash
# Provisions the workshop's appliance VM (Vagrantfile): builds ioclab as the
# README says, installs it as the systemd service with the web UI on every
# address (the host reaches it through the forwarded port 8000) and the
# endpoint listener on the class network, then prints the first login.
# Run as root; idempotent (`vagrant provision appliance` again is safe).
set -euo pipefail

: "${APPLIANCE_IP:?set by the Vagrantfile}"
checkout=/vagrant

bash "$checkout/scripts/vagrant/build.sh"

bash "$checkout/scripts/vagrant/service.sh"

# Wait for the web UI, then show where to log in.
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null http://127.0.0.1:8000/login; then break; fi
  sleep 1
done
curl -fsS -o /dev/null http://127.0.0.1:8000/login || {
  echo "appliance.sh: the web UI did not answer on :8000; journalctl -u ioclab says:" >&2
  journalctl -u ioclab.service --no-pager -n 40 >&2
  exit 1
}
echo "ioclab appliance: http://127.0.0.1:8000/ on the host (http://$APPLIANCE_IP:8000/ on the class network)"
if login=$(journalctl -u ioclab.service --no-pager -o cat | grep -m1 'first login:'); then
  echo "$login"
else
  echo "first login: shown at the service's first start only; vagrant ssh appliance -c 'sudo ioclab users reset-password instructor'"
fi
