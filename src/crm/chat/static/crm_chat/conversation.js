// Conversation view: live transcript, reply box, typing and read receipts.
// The cursor, dedupe by seq and client_id, pending sends and resend are the shared
// stream client's (stream.js, loaded with agent.js by core/base.html), so a reply
// that comes back both as an ack and as a broadcast (or from a poll) is shown once.
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
  var visitorRead = 0, lastRead = 0;
  var draftKey = "crm-draft:" + cfg.conversation;
  var stream = crmStream.create({
    cursor: cfg.lastSeq, prefix: "a", show: add,
    seen: [].map.call(log.querySelectorAll("[data-seq]"), function (n) { return n.dataset.seq; }),
    state: function (m) {
      render(m, m.node);
      errorEl.hidden = !m.failed;
      if (m.failed) errorEl.textContent = m.error;
    },
    push: function (m) { return agent.send({ type: "send", conversation: cfg.conversation, body: m.body, client_id: m.client_id }); },
    post: function (m) { return post(holder.dataset.sendUrl, { body: m.body, client_id: m.client_id }).then(function (j) { return j.message; }); },
    sync: subscribe,
  });
  // The server writes UTC; show the agent's local time, as live messages do.
  log.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.dateTime);
    if (!isNaN(d)) t.textContent = d.toTimeString().slice(0, 5);
  });
  // A search hit links to its message (#m<seq>): show that one, not the newest.
  var target = /^#m[0-9]+$/.test(location.hash) ? document.getElementById(location.hash.slice(1)) : null;
  if (target && log.contains(target)) target.scrollIntoView({ block: "center" });
  else log.scrollTop = log.scrollHeight;

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
  // A message shown for the first time (the stream drops repeats by seq); p: our own
  // pending reply it settles, whose bubble it takes over.
  function add(m, p) {
    var node = render(m, p ? p.node : null), after = null;
    // Keep seq order; replies still being sent (no seq yet) stay at the bottom.
    log.querySelectorAll(".bubble").forEach(function (n) { if (!after && n !== node && (!n.dataset.seq || +n.dataset.seq > m.seq)) after = n; });
    log.insertBefore(node, after);
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
    if (document.hidden || stream.last <= lastRead) return;
    lastRead = stream.last;
    if (!agent.send({ type: "read", conversation: cfg.conversation, up_to_seq: lastRead })) {
      post(holder.dataset.readUrl, { up_to_seq: lastRead }).catch(function () {});
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

  // ---- live updates: the agent socket (agent.js) carries them, or its polls do
  function subscribe() { if (agent.send({ type: "subscribe", conversation: cfg.conversation, since: stream.cursor })) setTransport("ws"); }
  document.addEventListener("crm-chat:ready", function () { stream.opened(); subscribe(); stream.resend(); });
  if (agent.ready) subscribe();
  document.addEventListener("crm-chat:event", function (e) {
    var ev = e.detail;
    if (ev.type === "pong") { stream.behind((ev.last_seqs || {})[cfg.conversation]); return; }
    // Acks and errors name no conversation: only ours match one of our client_ids.
    if ((ev.type === "ack" || ev.type === "error") && stream.pending[ev.client_id]) { stream.frame(ev); return; }
    if (ev.conversation !== cfg.conversation || stream.frame(ev)) return;
    if (ev.type === "status") setStatus(ev.status);
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
  document.addEventListener("crm-chat:down", function () { setTransport("poll"); });
  var polling = false;
  function poll() {
    if (polling || agent.ready) return;
    polling = true; setTransport("poll");
    fetch(holder.dataset.messagesUrl + "?since=" + stream.cursor, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        polling = false; if (!j) return;
        stream.polled(j.messages, j.messages.length < 500 && j.last_seq);
        setStatus(j.status); setVisitorRead(j.visitor_read_up_to); stream.resend();
      })
      .catch(function () { polling = false; });
  }
  document.addEventListener("crm-chat:poll", poll);
  document.addEventListener("visibilitychange", markRead);
  markRead();

  // ---- replying: idempotent by client_id; a failed send can be retried as is
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
    var m = stream.add({ body: body, sender_type: "user", sender_name: "You", created_at: new Date().toISOString() });
    m.node = render(m);
    log.appendChild(m.node); log.scrollTop = log.scrollHeight;
    box.value = ""; lastTyping = 0;
    try { localStorage.removeItem(draftKey); } catch (x) {}
    agent.send({ type: "typing", conversation: cfg.conversation, typing: false });
    stream.deliver(m);
  });
})();
