#!/bin/sh
# HARMLESS LAB SAMPLE written for ioclab's dns-ioc-why-kunai-rocks scenario.
# It is not malware: it only resolves why.kunai.rocks and fetches one page
# from it. In the lab that name resolves to 127.0.66.80 (a loopback sink of
# the lab network), so nothing leaves the machine.
dig +short why.kunai.rocks 2>/dev/null || getent hosts why.kunai.rocks
curl -s -m 5 -o /dev/null http://why.kunai.rocks/ || true
