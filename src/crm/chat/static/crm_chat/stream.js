// crm-chat stream client: the lossless-delivery rules, once, for the widget and the
// inbox (agent.js, conversation.js). One global, window.crmStream; load it first.
// The server replays everything after the `since` we resume from, then streams
// (DESIGN.md §5), so we show every message once, in seq order, if:
// - cursor (the seq up to which we hold every message) moves on "synced" marks,
//   complete polls, and message frames once this socket has synced (before that,
//   live events can skip seqs its replay is about to send); on an ack only when the
//   server marks it in_order (it then stands for the message frame, which is not
//   sent again); other acks can run ahead of messages still on their way;
// - messages are kept once by seq, own sends matched back by client_id;
// - an own send keeps its client_id for every retry, so the server stores it once.
(function () {
  "use strict";
  // Delay (ms) before try n+1: 1, 2, 4 … s, at most cap (30 s).
  function backoff(n, cap) { return Math.min(cap || 30000, 1000 * Math.pow(2, Math.min(n, 5))); }

  // One conversation. o.show(m, mine, extra): a new message (mine: the pending send
  // it settles); o.state(m, again): a pending send failed (m.error) or goes (again);
  // o.push(m): on the socket, true if sent; o.post(m): over HTTP, a promise of the
  // stored message (errors carry status, retry); o.sync(since): ask for a replay.
  function create(o) {
    var inOrder = false;
    var s = { cursor: o.cursor || 0, last: o.cursor || 0, seen: {}, pending: {} };
    (o.seen || []).forEach(function (seq) { s.seen[seq] = true; });
    function advance(seq) { if (seq > s.cursor) s.cursor = seq; }
    function receive(m, extra) {
      if (!m || !m.seq || s.seen[m.seq]) return;
      var mine = m.client_id && s.pending[m.client_id];
      if (mine) delete s.pending[m.client_id];
      s.seen[m.seq] = m;
      if (m.seq > s.last) s.last = m.seq;
      o.show(m, mine, extra);
    }
    // Frames of the live socket; returns false for those it leaves to the caller.
    s.frame = function (ev) {
      var m = s.pending[ev.client_id];
      if (ev.type === "message") { receive(ev.message); if (inOrder) advance(ev.seq); }
      else if (ev.type === "synced") { inOrder = true; advance(ev.up_to); }
      else if (ev.type === "ack") { receive(ev.message); if (inOrder && ev.in_order) advance(ev.seq); }
      else if (ev.type === "error" && m) { s.fail(m, ev.message); if (ev.code === "rate_limited") later(m, ev.retry_after); }
      else return false;
      return true;
    };
    // A new socket: its message frames are not in order until it has synced us.
    s.opened = function () { inOrder = false; };
    // A heartbeat's last seq past our cursor: a live event was lost (e.g. the broker
    // restarted), so ask for a replay.
    s.behind = function (lastSeq) { if (lastSeq > s.cursor) o.sync(s.cursor); };
    // Messages after our cursor, in order (a poll, the history); upTo: the last seq
    // when the answer holds everything up to it.
    s.polled = function (list, upTo, extra) {
      list.forEach(function (m) { receive(m, extra); advance(m.seq); });
      if (upTo) advance(upTo);
    };
    s.receive = receive;

    // Own sends: pending until the server's copy (ack, broadcast or poll) comes back.
    s.add = function (m) {
      m.client_id = o.prefix + Date.now().toString(36) + Math.random().toString(36).slice(2, 10);
      m.tries = 0;
      s.pending[m.client_id] = m;
      return m;
    };
    function deliver(m) {
      if (!s.pending[m.client_id] || m.sent || m.inflight) return;
      var again = m.failed;
      m.failed = false; o.state(m, again);
      if (o.push(m)) { m.sent = true; return; }
      m.inflight = true;
      o.post(m).then(function (stored) { m.inflight = false; receive(stored); }).catch(function (e) {
        m.inflight = false;
        // Lost on the way or a server error: again later, with the same client_id.
        if (!e.status || e.status >= 500) { m.tries++; setTimeout(function () { deliver(m); }, backoff(m.tries, 15000)); return; }
        s.fail(m, e.message);
        if (e.status === 429) later(m, e.retry);
      });
    }
    s.deliver = deliver;
    s.fail = function (m, message) {
      if (!s.pending[m.client_id]) return;
      m.failed = true; m.sent = false; m.error = message; o.state(m);
    };
    // Over a limit: shown as not sent, then tried again once the wait is over.
    function later(m, seconds) { setTimeout(function () { s.retry(m); }, (seconds || 5) * 1000); }
    s.retry = function (m) { if (s.pending[m.client_id]) deliver(m); };
    // After a reconnect or a poll: sends that went over a socket which may have died
    // before its ack go again (same client_id, so never twice).
    s.resend = function () {
      Object.keys(s.pending).forEach(function (k) { var m = s.pending[k]; if (!m.failed) { m.sent = false; deliver(m); } });
    };
    return s;
  }

  // A WebSocket that reconnects with backoff, polling while down. o.path, o.ping (ms);
  // o.open(send): opened, send goes before "ready"; o.frame(ev): every frame;
  // o.down(code): closed, false stops reconnecting; o.poll(): reschedules by poll(ms).
  function socket(o) {
    var ws = null, fails = 0, pollTimer = null, pingTimer = null;
    var l = { ready: false };
    l.send = function (frame) {
      if (l.ready && ws && ws.readyState === 1) { ws.send(JSON.stringify(frame)); return true; }
      return false;
    };
    l.poll = function (ms) { if (l.ready) return; clearTimeout(pollTimer); pollTimer = setTimeout(o.poll, ms); };
    function closed(e) {
      var was = l.ready;
      l.ready = false; ws = null; clearInterval(pingTimer);
      if (!was) fails++;
      if (o.down(e.code) === false) return;
      l.poll(0);
      setTimeout(l.start, backoff(fails));
    }
    l.start = function () {
      if (ws) return;
      if (!("WebSocket" in window)) { l.poll(0); return; }
      var sock;
      try { sock = ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + o.path); } catch (x) { ws = null; return closed({}); }
      sock.onopen = function () { if (o.open) o.open(function (f) { sock.send(JSON.stringify(f)); }); };
      sock.onmessage = function (e) {
        var ev; try { ev = JSON.parse(e.data); } catch (x) { return; }
        if (ev.type === "ready") {
          l.ready = true; fails = 0; clearTimeout(pollTimer);
          clearInterval(pingTimer); pingTimer = setInterval(function () { l.send({ type: "ping" }); }, o.ping);
        }
        o.frame(ev);
      };
      sock.onclose = closed;
    };
    return l;
  }

  window.crmStream = { create: create, socket: socket, backoff: backoff };
})();
