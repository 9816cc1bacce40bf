"""The ``securemsg`` command (:mod:`.main`, click + rich) and the work behind its subcommands.

:mod:`.demo` is ``securemsg demo`` (a relay and three clients over loopback),
:mod:`.walkthrough` is ``securemsg walkthrough`` (one session in process, no network);
:mod:`.devices`, :mod:`.disclose`, :mod:`.interop` and :mod:`.kt_audit` serve the commands of
those names. Not here: the relay (:mod:`securemsg.relay`), the client SDK
(:mod:`securemsg.client`) or the interop kit itself (:mod:`securemsg.interop`).
"""
