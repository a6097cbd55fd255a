"""One trainee of a class: PyMISP, unmodified from PyPI, adding, tagging,
sighting and searching while nineteen others do the same.

Usage: class_client.py URL KEY N. Exits non-zero on any error (PyMISP raises
on a 5xx); prints a JSON summary with the uuids of the events it added.
"""
import json
import sys

from pymisp import MISPEvent, PyMISP

url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
misp = PyMISP(url, key, ssl=False)
mine = f"class:trainee-{n}"
uuids = []
for e in range(3):
    ev = MISPEvent()
    ev.info = f"trainee {n} event {e}"
    ev.distribution = 0
    ev.threat_level_id = 2
    ev.analysis = 1
    for i in range(5):
        ev.add_attribute("domain", f"t{n}-e{e}-a{i}.class.example", to_ids=True)
    added = misp.add_event(ev, pythonify=True)
    assert not isinstance(added, dict), added
    uuids.append(added.uuid)
    tagged = misp.tag(added, mine)
    assert tagged.get("saved") is True, tagged
    tagged = misp.tag(added.attributes[0], "class:shared")
    assert tagged.get("saved") is True, tagged
    sighting = misp.add_sighting({"value": f"t{n}-e{e}-a1.class.example"})
    assert "Sighting" in sighting, sighting
    # my own events are all there, whatever the others do meanwhile
    found = misp.search(controller="attributes", tags=mine, pythonify=True)
    assert len(found) == 5 * (e + 1), (e, len(found))
    shared = misp.search(controller="attributes", tags="class:shared", pythonify=True)
    assert len(shared) >= e + 1, len(shared)
    index = misp.search_index(eventinfo=f"trainee {n} event")
    assert len(index) == e + 1, index

print(json.dumps({"trainee": n, "events": uuids}))
