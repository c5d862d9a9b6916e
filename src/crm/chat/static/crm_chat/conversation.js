// Conversation view: live transcript, reply box, typing and read receipts.
// Messages are keyed by seq and own sends by client_id, so a reply that comes back
// both as an ack and as a broadcast (or from a poll) is shown once.
(function () {
  "use strict";
  // Destructive actions ask first (no inline handlers: the form says what to ask).
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) { if (!window.confirm(f.dataset.confirm)) e.preventDefault(); });
  });
  var holder = document.getElementById("conversation-config");
  var cfg = JSON.parse(holder.dataset.config);
  var csrf = holder.querySelector("[name=csrfmiddlewaretoken]").value;
  var log = document.getElementById("transcript");
  var form = document.getElementById("reply");
  var box = document.getElementById("reply-body");
  var errorEl = document.getElementById("reply-error");
  var typingEl = document.getElementById("typing");
  var transportEl = document.getElementById("transport");
  var statusEl = document.getElementById("conv-status");
  var agent = window.crmAgent || { ready: false, send: function () { return false; } };
  // cursor: the seq up to which we hold every message (in-order socket frames, polls,
  // "synced" marks); resuming from it can't skip one. Acks don't move it.
  var lastSeq = cfg.lastSeq, cursor = cfg.lastSeq, seen = {}, pending = {}, visitorRead = 0, lastRead = 0;
  var draftKey = "crm-draft:" + cfg.conversation;
  log.querySelectorAll("[data-seq]").forEach(function (n) { seen[n.dataset.seq] = n; });
  // The server writes UTC; show the agent's local time, as live messages do.
  log.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.dateTime);
    if (!isNaN(d)) t.textContent = d.toTimeString().slice(0, 5);
  });
  log.scrollTop = log.scrollHeight;

  function text(tag, cls, value) { var n = document.createElement(tag); n.className = cls; n.textContent = value; return n; }
  function kind(m) { return m.sender_type === "user" ? "agent" : m.sender_type === "visitor" ? "visitor" : "system"; }
  function render(m, node) {
    node = node || document.createElement("div");
    node.className = "bubble " + kind(m) + (m.internal ? " internal" : "") + (m.failed ? " failed" : "");
    node.textContent = "";
    if (m.sender_type !== "system") node.appendChild(text("span", "who", m.sender_name));
    node.appendChild(text("span", "text", m.body));
    var meta = text("span", "meta", m.created_at ? new Date(m.created_at).toTimeString().slice(0, 5) : "");
    if (m.internal) meta.appendChild(document.createTextNode(" · only agents see this"));
    if (m.sender_type === "user") {
      meta.appendChild(document.createTextNode(" · "));
      meta.appendChild(text("span", "state", m.failed ? "Not sent" : !m.seq ? "Sending…" : m.seq <= visitorRead || m.read_at ? "Read" : "Sent"));
    }
    node.appendChild(meta);
    if (m.seq) node.dataset.seq = m.seq;
    return node;
  }
  function add(m) {
    if (!m || seen[m.seq]) return;
    var p = m.client_id && pending[m.client_id];
    var node = render(m, p ? p.node : null);
    if (p) delete pending[m.client_id];
    seen[m.seq] = node;
    if (m.seq > lastSeq) lastSeq = m.seq;
    if (!p) {
      var after = null;
      log.querySelectorAll("[data-seq]").forEach(function (n) { if (!after && +n.dataset.seq > m.seq) after = n; });
      log.insertBefore(node, after);
    }
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    if (atBottom || p) log.scrollTop = log.scrollHeight;
    if (m.sender_type === "visitor") { typing(null); markRead(); }
  }
  function setVisitorRead(n) {
    if (n <= visitorRead) return;
    visitorRead = n;
    log.querySelectorAll(".bubble.agent[data-seq]").forEach(function (node) {
      if (+node.dataset.seq <= visitorRead) { var s = node.querySelector(".state"); if (s) s.textContent = "Read"; }
    });
  }
  function setStatus(s) {
    if (!statusEl) return;
    statusEl.textContent = s.charAt(0).toUpperCase() + s.slice(1);
    statusEl.className = "badge status-" + s;
    if (box) { box.disabled = s === "closed"; form.querySelector("button[type=submit]").disabled = s === "closed"; }
  }
  var typingTimer = null;
  function typing(ev) {
    clearTimeout(typingTimer);
    typingEl.textContent = ev && ev.typing ? ev.sender_name + " is typing…" : "";
    if (ev && ev.typing) typingTimer = setTimeout(function () { typingEl.textContent = ""; }, 6000);
  }
  function markRead() {
    if (document.hidden || lastSeq <= lastRead) return;
    lastRead = lastSeq;
    if (!agent.send({ type: "read", conversation: cfg.conversation, up_to_seq: lastSeq })) {
      post(holder.dataset.readUrl, { up_to_seq: lastSeq }).catch(function () {});
    }
  }
  function post(url, data) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: JSON.stringify(data),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { var e = new Error((j.error && j.error.message) || "Could not send."); e.status = r.status; throw e; }
        return j;
      });
    });
  }
  function setTransport(t) { document.documentElement.dataset.transport = t; if (transportEl) transportEl.textContent = t === "ws" ? "Live" : "Live (polling)"; }

  // ---- live updates
  // A new socket hears the inbox's live events before it has replayed this
  // conversation, and those can skip seqs the replay is about to send: message frames
  // move the cursor only once the socket has "synced" us (then they come in order).
  var inOrder = false;
  function subscribe() { if (agent.send({ type: "subscribe", conversation: cfg.conversation, since: cursor })) setTransport("ws"); }
  function advance(seq) { if (seq > cursor) cursor = seq; }
  document.addEventListener("crm-chat:ready", function () { inOrder = false; subscribe(); });
  if (agent.ready) subscribe();
  document.addEventListener("crm-chat:event", function (e) {
    var ev = e.detail;
    if (ev.type === "pong") {
      // A live event was lost (e.g. the broker restarted): replay what we missed.
      if ((ev.last_seqs || {})[cfg.conversation] > cursor) subscribe();
      return;
    }
    if (ev.conversation !== cfg.conversation) return;
    if (ev.type === "message") { add(ev.message); if (inOrder) advance(ev.seq); }
    else if (ev.type === "synced") { inOrder = true; advance(ev.up_to); }
    else if (ev.type === "ack") { add(ev.message); }
    else if (ev.type === "status") setStatus(ev.status);
    else if (ev.type === "read" && ev.reader === "visitor") setVisitorRead(ev.up_to_seq);
    else if (ev.type === "typing" && ev.sender_type === "visitor") typing(ev);
    else if (ev.type === "revoked") revoked(ev.message);
  });
  // Reassigned, moved out of our team or deleted: this chat is no longer ours to read.
  function revoked(message) {
    errorEl.textContent = message; errorEl.hidden = false;
    form.querySelectorAll("textarea, button").forEach(function (n) { n.disabled = true; });
    document.documentElement.dataset.chatRevoked = "1";
  }
  document.addEventListener("crm-chat:event", function (e) { if (e.detail.type === "error" && e.detail.client_id) fail(e.detail.client_id, e.detail.message); });
  document.addEventListener("crm-chat:down", function () { setTransport("poll"); });
  var polling = false;
  function poll() {
    if (polling || agent.ready) return;
    polling = true; setTransport("poll");
    fetch(holder.dataset.messagesUrl + "?since=" + cursor, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        polling = false; if (!j) return;
        j.messages.forEach(function (m) { add(m); advance(m.seq); });
        if (j.messages.length < 500) advance(j.last_seq);
        setStatus(j.status); setVisitorRead(j.visitor_read_up_to); resend();
      })
      .catch(function () { polling = false; });
  }
  document.addEventListener("crm-chat:poll", poll);
  document.addEventListener("visibilitychange", markRead);
  markRead();

  // ---- replying: idempotent by client_id; a failed send can be retried as is
  function fail(clientId, message) {
    var p = pending[clientId];
    if (!p) return;
    p.msg.failed = true; p.sent = false; render(p.msg, p.node);
    errorEl.textContent = message; errorEl.hidden = false;
  }
  function deliver(p) {
    if (p.sent) return;
    p.msg.failed = false; render(p.msg, p.node); errorEl.hidden = true;
    if (agent.send({ type: "send", conversation: cfg.conversation, body: p.msg.body, client_id: p.msg.client_id })) { p.sent = true; return; }
    p.sent = true;
    post(holder.dataset.sendUrl, { body: p.msg.body, client_id: p.msg.client_id })
      .then(function (j) { add(j.message); })
      .catch(function (e) { p.sent = false; if (e.status) fail(p.msg.client_id, e.message); });
  }
  function resend() { Object.keys(pending).forEach(function (k) { if (!pending[k].msg.failed) deliver(pending[k]); }); }
  document.addEventListener("crm-chat:ready", function () { Object.keys(pending).forEach(function (k) { pending[k].sent = false; }); resend(); });
  if (!form) return;
  box.value = localStorage.getItem(draftKey) || "";
  var lastTyping = 0;
  box.addEventListener("input", function () {
    try { box.value ? localStorage.setItem(draftKey, box.value) : localStorage.removeItem(draftKey); } catch (e) {}
    var now = Date.now();
    if (now - lastTyping > 2500) { lastTyping = now; agent.send({ type: "typing", conversation: cfg.conversation, typing: true }); }
  });
  box.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = box.value.trim();
    if (!body) return;
    var msg = { client_id: "a" + Date.now().toString(36) + Math.random().toString(36).slice(2, 10), body: body, sender_type: "user", sender_name: "You", created_at: new Date().toISOString() };
    var p = { msg: msg, node: render(msg), sent: false };
    pending[msg.client_id] = p;
    log.appendChild(p.node); log.scrollTop = log.scrollHeight;
    box.value = ""; lastTyping = 0;
    try { localStorage.removeItem(draftKey); } catch (x) {}
    agent.send({ type: "typing", conversation: cfg.conversation, typing: false });
    deliver(p);
  });
})();
