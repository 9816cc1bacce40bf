"""The interoperability kit: run Signal-protocol implementations against each other.

``securemsg interop run --a PEER --b PEER`` drives two peer processes that speak the protocol in
docs/interop-protocol.md (``securemsg-interop/1``) through the scenario suite and reports, per
scenario and role, pass / fail / not supported. Modules: :mod:`.driver` (one peer process),
:mod:`.peer` (the securemsg peer, over the public API), :mod:`.scenarios`, :mod:`.runner`
(pairings, roles, reports) and :mod:`.peers` (the bundled peers).

This is an application of securemsg (like the relay), not library API. Not here: the command
line (:mod:`securemsg.cli.interop`) and the libsignal peers (``peers/``, ``tests/interop/``).
"""
