"""PyMISP, unmodified from PyPI, against the roles of ioclab's embedded MISP store.

Usage: pymisp_roles.py URL BLUE_USER_KEY BLUE_PUBLISHER_KEY RED_USER_KEY ADMIN_KEY.
Blue and red are two organisations. Exits non-zero (with the failed assertion)
if a rule is not enforced as MISP enforces it; prints a JSON summary.
"""
import json
import sys

from pymisp import MISPEvent, PyMISP

url, blue_key, blue_pub_key, red_key, admin_key = sys.argv[1:6]
blue, blue_pub, red, admin = (PyMISP(url, k, ssl=False) for k in (blue_key, blue_pub_key, red_key, admin_key))


def refused(answer):
    """PyMISP turns a 4xx JSON answer into {"errors": (status, body)}."""
    return isinstance(answer, dict) and "errors" in answer and answer["errors"][0] == 403


ev = MISPEvent()
ev.info = "Blue team: phishing wave"
ev.add_attribute("domain", "phish.example", to_ids=True)
ev = blue.add_event(ev, pythonify=True)
assert not isinstance(ev, dict), ev

# red may not touch blue's event
theirs = red.get_event(ev.uuid, pythonify=True)
theirs.info = "defaced by red"
assert refused(red.update_event(theirs)), "red edited blue's event"
assert refused(red.tag(ev.uuid, "tlp:red")), "red tagged blue's event"
assert refused(red.delete_event(ev)), "red deleted blue's event"
assert refused(red.publish(ev)), "red published blue's event"

# blue's user edits and tags it, but may not publish it
mine = blue.get_event(ev.uuid, pythonify=True)
mine.info = "Blue team: phishing wave (triaged)"
edited = blue.update_event(mine, pythonify=True)
assert not isinstance(edited, dict) and edited.info.endswith("(triaged)"), edited
assert blue.tag(ev.uuid, "tlp:green").get("saved") is True
assert refused(blue.publish(ev)), "a user-role key published"
assert blue.get_event(ev.uuid, pythonify=True).published is False

# blue's publisher publishes it; the admin may unpublish and delete anything
assert blue_pub.publish(ev).get("success") is True
assert blue.get_event(ev.uuid, pythonify=True).published is True
assert admin.unpublish(ev).get("success") is True
assert admin.delete_event(ev).get("success") is True

print(json.dumps({"event_uuid": ev.uuid, "rules": 9}))
