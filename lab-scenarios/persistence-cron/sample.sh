#!/bin/sh
# HARMLESS LAB SAMPLE written for ioclab's persistence-cron scenario.
# It imitates a cron persistence installer but is not malware: it writes a
# small "updater" script to /tmp, a cron line that would run it every 10
# minutes, and runs the updater once. The updater only looks up
# updates.cron.lab and fetches one page from it: in the lab that name
# resolves to 127.0.99.80, a loopback sink of the lab network, so nothing
# leaves the machine. In the sandbox the cron line goes to the sandbox's
# private crontab spool; on the endpoint the lab step gives a crontab path
# under /tmp (never the real /etc/cron.d or a real crontab), removed by the
# scenario's cleanup.
crontab_file=${1:-/var/spool/cron/crontabs/root}
updater=/tmp/.ioclab-cron-updater.sh
rm -f "$updater"
cat > "$updater" <<'UPDATER'
#!/bin/sh
# HARMLESS payload of ioclab's persistence-cron lab sample: one lookup and one request to the lab, then a pause.
getent hosts updates.cron.lab >/dev/null
curl -s -m 5 -o /dev/null http://updates.cron.lab/check || true
sleep 2
UPDATER
chmod 755 "$updater"
mkdir -p "$(dirname "$crontab_file")" 2>/dev/null
echo "*/10 * * * * $updater" >> "$crontab_file" 2>/dev/null || echo "cannot write $crontab_file" >&2
"$updater"
