#!/bin/sh
# HARMLESS LAB SAMPLE written for ioclab's malicious-script-dropper scenario.
# It imitates a dropper but is not malware: the "second stage" it writes only
# looks up update.dropper.lab and sends one HTTP request to it. In the lab
# that name resolves to 127.0.77.80, a loopback sink of the lab network, so
# nothing leaves the machine. The second stage deletes itself afterwards.
stage2=/tmp/.ioclab-dropper-stage2.sh
cat > "$stage2" <<'STAGE2'
#!/bin/sh
# HARMLESS second stage of ioclab's lab dropper (see the first stage).
dig +short update.dropper.lab A 2>/dev/null || getent hosts update.dropper.lab
curl -s -m 5 -o /dev/null http://update.dropper.lab/beacon || true
STAGE2
chmod +x "$stage2"
"$stage2"
rm -f "$stage2"
sleep 2
