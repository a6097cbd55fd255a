#!/bin/sh
# HARMLESS LAB SAMPLE written for ioclab's false-positive-warninglist scenario.
# It imitates a bot that first checks it is online, as much malware does,
# then beacons; it is not malware. The check asks the public resolver
# 8.8.8.8 for google.com (over DNS, then over HTTPS: Google's DNS-over-HTTPS
# API) and fetches google.com's home page; the beacon looks
# up stats.quietbeacon.lab and sends one HTTP request there. Inside the lab
# network and the sandbox every address is local: 8.8.8.8 and google.com are
# local fakes there, and stats.quietbeacon.lab resolves to 127.0.55.80, a
# loopback sink. Nothing leaves the machine.
dig +short +time=2 +tries=1 @8.8.8.8 google.com A 2>/dev/null
curl -s -k -m 5 -o /dev/null "https://8.8.8.8/resolve?name=google.com&type=A" || true
curl -s -m 5 -o /dev/null http://google.com/ || true
dig +short stats.quietbeacon.lab A 2>/dev/null || getent hosts stats.quietbeacon.lab
curl -s -m 5 -o /dev/null "http://stats.quietbeacon.lab/ping?id=lab" || true
sleep 2
