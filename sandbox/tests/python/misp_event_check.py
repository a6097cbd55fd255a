"""Reads the task's event back with PyMISP (unmodified, from PyPI) and
prints what a reviewer would check, as one JSON line."""
import json
import sys

from pymisp import PyMISP

url, key, uuid = sys.argv[1:4]
misp = PyMISP(url, key, ssl=False)
event = misp.get_event(uuid, pythonify=True)
flat = list(event.attributes) + [a for o in event.objects for a in o.attributes]
ids_parts = sorted({p for a in flat if a.to_ids for p in str(a.value).split("|")})
warned = misp.values_in_warninglist(ids_parts)
print(json.dumps({
    "id": str(event.id),
    "uuid": event.uuid,
    "info": event.info,
    "published": bool(event.published),
    "threat_level_id": int(event.threat_level_id),
    "distribution": int(event.distribution),
    "tags": sorted(t.name for t in event.tags),
    "attributes": sorted([a.type, str(a.value), bool(a.to_ids), a.category] for a in event.attributes),
    "attribute_tags": sorted(t.name for a in event.attributes for t in a.tags),
    "objects": sorted([o.name, sorted([a.object_relation, str(a.value)] for a in o.attributes)] for o in event.objects),
    "warninglisted": warned if isinstance(warned, dict) else {},
    "events": len(misp.events(pythonify=True)),
}))
