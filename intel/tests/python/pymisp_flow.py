"""PyMISP, unmodified from PyPI, against ioclab's embedded MISP store.

Usage: pymisp_flow.py URL KEY. Exits non-zero (with the failed assertion) if
anything differs from what MISP would answer; prints a JSON summary.
"""
import json
import sys

from pymisp import MISPEvent, MISPObject, PyMISP

url, key = sys.argv[1], sys.argv[2]
misp = PyMISP(url, key, ssl=False)  # getVersion, users/view/me, describeTypes
assert misp.misp_instance_version["version"] == "2.5.1", misp.misp_instance_version

ev = MISPEvent()
ev.info = "Lab: dropper campaign"
ev.distribution = 0
ev.threat_level_id = 2
ev.analysis = 1
ev.add_attribute("domain", "Why.Kunai.Rocks.", to_ids=True)  # normalised by the store
ev.add_attribute("ip-dst", "203.0.113.7", to_ids=True)
ev.add_attribute("sha256", "A" * 64, to_ids=True)
ev.add_attribute("domain", "benign.example", to_ids=False)
ev.add_attribute("ip-dst", "8.8.8.8", to_ids=True)
obj = MISPObject("file")
obj.add_attribute("filename", value="dropper.sh")
obj.add_attribute("sha1", value="b" * 40)
ev.add_object(obj)
added = misp.add_event(ev, pythonify=True)
assert not isinstance(added, dict), added
assert added.info == "Lab: dropper campaign"
assert len(added.attributes) == 5 and len(added.objects) == 1
values = sorted(a.value for a in added.attributes)
assert "why.kunai.rocks" in values, values
assert "a" * 64 in values, values

# a duplicate uuid is refused as MISP does
dup = misp.add_event(added)
assert "errors" in dup, dup

tagged = misp.tag(added, "tlp:white")
assert tagged.get("saved") is True, tagged
published = misp.publish(added)
assert published.get("success") is True, published
again = misp.get_event(added.uuid, pythonify=True)
assert again.published is True
assert [t.name for t in again.tags] == ["tlp:white"], again.tags

by_type = misp.search(controller="attributes", type_attribute="domain", to_ids=True, pythonify=True)
assert [a.value for a in by_type] == ["why.kunai.rocks"], [a.value for a in by_type]
by_tag = misp.search(controller="attributes", tags="tlp:white", pythonify=True)
assert len(by_tag) == 7, len(by_tag)
by_unknown_tag = misp.search(controller="attributes", tags="no-such-tag", pythonify=True)
assert by_unknown_tag == [], by_unknown_tag
recent = misp.search(controller="attributes", last="1d", to_ids=False, pythonify=True)
assert [a.value for a in recent] == ["benign.example"], [a.value for a in recent]
index = misp.search_index(published=True)
assert [e["uuid"] for e in index] == [added.uuid], index
minimal = misp.search_index(published=True, minimal=True)
assert [(e["id"], e["uuid"]) for e in minimal] == [(str(added.id), added.uuid)], minimal

# the CSV export, as `ioclab misp export` asks for it
rows = misp.search(controller="attributes", return_format="csv", type_attribute="ip-dst", to_ids=True,
                   requested_attributes=["uuid", "event_id", "type", "value", "to_ids"], pythonify=True)
assert sorted(r["value"] for r in rows) == ["203.0.113.7", "8.8.8.8"], rows
assert all(r["to_ids"] == "1" and r["event_id"] == str(added.id) and len(r["uuid"]) == 36 for r in rows), rows
# 8.8.8.8 (public DNS resolvers) and 203.0.113.7 (RFC 5735) are on warninglists
clean = misp.search(controller="attributes", return_format="csv", type_attribute=["ip-dst", "domain"],
                    enforce_warninglist=True, requested_attributes=["value"], headerless=True)
assert clean == '"why.kunai.rocks"\n"benign.example"\n', repr(clean)

sighting = misp.add_sighting({"value": "why.kunai.rocks"})
assert "Sighting" in sighting, sighting
warn = misp.values_in_warninglist(["8.8.8.8", "why.kunai.rocks"])
assert list(warn) == ["8.8.8.8"], warn
assert warn["8.8.8.8"][0]["name"] == "List of known IPv4 public DNS resolvers", warn

try:
    PyMISP(url, "x" * 40, ssl=False)
    raise AssertionError("a wrong key was accepted")
except Exception as e:  # PyMISP raises on a failed users/view/me
    assert "Authentication failed" in str(e) or "403" in str(e), e

print(json.dumps({"event_uuid": added.uuid, "attributes": len(added.attributes), "sightings": 1}))
