#!/bin/sh
# HARMLESS second stage of ioclab's download-execute-base64 lab sample.
# IOCLAB{base64-is-not-encryption}
# It only looks up beacon.b64lab.lab, sends one request there and pauses; in
# the lab that name resolves to 127.0.44.80, a loopback sink: nothing leaves
# the machine.
getent hosts beacon.b64lab.lab >/dev/null
curl -s -m 5 -o /dev/null http://beacon.b64lab.lab/hello || true
sleep 2
