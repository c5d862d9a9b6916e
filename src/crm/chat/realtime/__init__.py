"""The socket hot path: the WebSockets of visitors and agents.

- ``socket``: a lean ASGI WebSocket handler (frames and hub events one at a time);
- ``hub``: groups of sockets, in the process and across processes over Redis;
- ``db``: the database hop every socket uses (threads of its own, a kept
  connection, events sent from the event loop);
- ``stream``: what both sockets share: the delivery guarantee (replay + forward),
  error frames, and rights that are read again (``crm.chat.revocation``);
- ``visitor``: ``/p/chat/<key>/ws``, one visitor and one conversation of theirs;
- ``agent``: ``/crm/chat/ws``, a logged-in agent's live inbox and open conversations.

Both authorise before they subscribe to anything: the visitor by the token in its
first frame (never in the URL, which lands in logs) plus the widget's allowed
Origin; the agent by the session cookie, the chat permission and the CRM's own
Origin (so another site can't open a socket with the agent's cookies).

Close codes: 4400 bad frame, 4401 bad or missing token or session ended, 4403
forbidden (origin or permission), 4404 unknown widget or conversation or module
disabled, 4408 no auth frame in time.
"""
