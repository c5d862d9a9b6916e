// crm-chat visitor UI, running inside the CRM-served iframe. No build step, no globals
// of its own. The cursor, dedupe by seq and client_id, pending sends, resend and the
// reconnect backoff are the shared stream client's (../stream.js, loaded first), so a
// reply that arrives over both the WebSocket and a poll, or a retried send, is shown
// exactly once, and resuming after any break can't skip a message.
(function () {
  "use strict";
  var cfgEl = document.getElementById("crm-chat-config");
  var cfg = JSON.parse(cfgEl.dataset.config);
  var root = document.documentElement;
  var $ = function (id) { return document.getElementById(id); };
  var log = $("log"), body = $("body"), form = $("composer"), who = $("who");
  var presence = $("presence"), banner = $("banner"), typingEl = $("typing");
  var storeKey = "crmchat:" + cfg.key;
  root.style.setProperty("--c", cfg.color);

  var S = {
    token: null, visitor: null, conv: null, readUpTo: 0, agents: 0,
    open: false, parent: null, pages: [], maxBody: 5000, unread: 0, lastRead: 0,
  };
  var backoff = crmStream.backoff;

  // ---- storage: localStorage may be blocked (privacy modes); fall back to memory.
  var mem = {};
  function load() { try { return localStorage.getItem(storeKey); } catch (e) { return mem[storeKey] || null; } }
  function save(v) {
    try { v ? localStorage.setItem(storeKey, v) : localStorage.removeItem(storeKey); } catch (e) { mem[storeKey] = v; }
    // Mirror to the host page's first-party storage (see loader.js).
    S.hostToken = v; toParent({ t: "token", v: v || "" });
  }

  // ---- talking to the host page (the loader). Never to "*": only to the parent's
  // exact origin, learnt from its first message and checked against allowed origins.
  var framed = window.parent !== window;
  function parentAllowed(origin) { return !cfg.parents.length || cfg.parents.indexOf(origin) >= 0; }
  function toParent(m) { if (S.parent) window.parent.postMessage(m, S.parent); }
  window.addEventListener("message", function (e) {
    if (!framed || e.source !== window.parent || !parentAllowed(e.origin) || !e.data) return;
    if (!S.parent) {
      S.parent = e.origin; S.hostToken = typeof e.data.tok === "string" ? e.data.tok : null;
      if (S.open) toParent({ t: "size", open: 1 });
      helloed();
    }
    if (e.origin !== S.parent) return;
    if ("ph" in e.data) root.classList.toggle("phone", !!e.data.ph);
    if (e.data.t === "page") trackPage(e.data);
  });
  var panel = $("chat"), launcher = $("launcher"), badgeEl = $("badge");
  root.classList.add(cfg.position);
  function setOpen(v) {
    S.open = v;
    // Grow the frame before showing the panel, shrink it after hiding it.
    if (v) toParent({ t: "size", open: 1 });
    panel.hidden = !v;
    root.classList.toggle("open", v);
    launcher.setAttribute("aria-expanded", v);
    launcher.setAttribute("aria-label", v ? "Minimise chat" : "Chat with us");
    if (!v) toParent({ t: "size", open: 0 });
    if (v) { markRead(); body.focus(); } else launcher.focus();
    showUnread();
  }
  launcher.addEventListener("click", function () { setOpen(!S.open); });
  $("close").addEventListener("click", function () { setOpen(false); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && S.open) setOpen(false); });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) markRead(); });
  function showUnread() {
    badgeEl.textContent = S.unread > 99 ? "99+" : S.unread;
    badgeEl.hidden = !S.unread || S.open;
    launcher.setAttribute("aria-label", S.open ? "Minimise chat" : S.unread ? "Chat with us, " + S.unread + " unread" : "Chat with us");
  }

  // ---- HTTP
  function api(method, path, data) {
    var headers = { "Content-Type": "application/json" };
    if (S.token) headers["X-Chat-Visitor-Token"] = S.token;
    return fetch(cfg.api + path, {
      method: method, headers: headers, credentials: "omit", cache: "no-store",
      body: data === undefined ? undefined : JSON.stringify(data),
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { var err = new Error((j.error && j.error.message) || "Request failed"); err.status = r.status; err.code = j.error && j.error.code; err.retry = +r.headers.get("Retry-After") || 0; throw err; }
        return j;
      });
    });
  }
  function showBanner(text) { banner.textContent = text || ""; banner.hidden = !text; }

  // ---- rendering (textContent only: nothing typed by anyone becomes markup)
  function fmtTime(iso) { var d = new Date(iso); return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
  function statusText(m) {
    if (m.failed) return "Not sent";
    if (!m.seq) return "Sending…";
    if (m.seq <= S.readUpTo) return "Read";
    return S.agents > 0 ? "Delivered" : "Sent";
  }
  function render(m) {
    var el = m.el || document.createElement("div");
    var mine = m.sender_type === "visitor";
    el.className = "msg " + (m.sender_type === "system" ? "sys" : mine ? "me" : "them") + (m.failed ? " failed" : "");
    el.textContent = "";
    if (m.sender_type === "user") { var n = document.createElement("span"); n.className = "who-n"; n.textContent = m.sender_name; el.appendChild(n); }
    el.appendChild(document.createTextNode(m.body));
    if (m.sender_type !== "system") {
      var st = document.createElement("span"); st.className = "st";
      st.textContent = (m.created_at ? fmtTime(m.created_at) : "") + (mine ? " · " + statusText(m) : "");
      if (m.failed) { var b = document.createElement("button"); b.type = "button"; b.textContent = "Retry"; b.addEventListener("click", function () { stream.retry(m); }); st.appendChild(document.createTextNode(" · ")); st.appendChild(b); }
      el.appendChild(st);
    }
    el.dataset.seq = m.seq || "";
    m.el = el;
    return el;
  }
  function place(m) {
    // Keep seq order; messages still being sent (no seq yet) stay at the bottom.
    var el = render(m), nodes = log.querySelectorAll(".msg[data-seq]");
    if (m.seq) for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i], s = +n.dataset.seq;
      if (n !== el && (!s || s > m.seq)) { log.insertBefore(el, n); return; }
    }
    log.appendChild(el);
  }
  function scrollDown() { log.scrollTop = log.scrollHeight; }
  function refreshStates() { Object.keys(stream.seen).forEach(function (k) { var m = stream.seen[k]; if (m.sender_type === "visitor") render(m); }); }

  // A message shown for the first time (the stream drops repeats by seq); mine: our
  // own pending send it settles, whose bubble it takes over.
  function show(m, mine, initial) {
    if (m.internal) return;
    if (mine) m.el = mine.el;
    place(m);
    if (m.sender_type === "user" && !initial) { typing(null); if (m.seq > S.lastRead) { S.unread++; notifyUnread(); } }
    scrollDown();
  }
  function setConversation(c) {
    if (!c) return;
    var wasClosed = S.conv && S.conv.status === "closed";
    S.conv = c;
    if (c.read_up_to > S.readUpTo) { S.readUpTo = c.read_up_to; refreshStates(); }
    body.placeholder = c.status === "closed" ? "Write to reopen the chat…" : "Write a message…";
    root.dataset.status = c.status;
    if (wasClosed !== (c.status === "closed")) refreshStates();
  }
  function setAgents(n) {
    if (n === S.agents) return;
    S.agents = n;
    presence.textContent = S.closedNow ? "Closed now · we'll reply by email" : n > 0 ? "Online · we usually reply in a few minutes" : S.visitor && S.visitor.email ? "Offline · we'll reply by email" : "Offline · leave a message";
    presence.className = "pr" + (n > 0 && !S.closedNow ? " on" : "");
    refreshStates();
  }
  function notifyUnread() {
    if (S.open && !document.hidden) { markRead(); return; }
    showUnread();
  }
  function markRead() {
    if (!S.conv || !S.open || document.hidden) return;
    S.unread = 0; showUnread();
    if (stream.last <= S.lastRead) return;
    S.lastRead = stream.last;
    if (!link.send({ type: "read", up_to_seq: S.lastRead })) api("POST", "/conversations/" + S.conv.id + "/read", { up_to_seq: S.lastRead }).catch(function () {});
  }
  var typingTimer;
  function typing(ev) {
    clearTimeout(typingTimer);
    typingEl.textContent = ev && ev.typing ? ev.sender_name + " is typing…" : "";
    if (ev && ev.typing) typingTimer = setTimeout(function () { typingEl.textContent = ""; }, 6000);
  }

  // ---- page trail: queued until the visitor is identified (the first page is never lost)
  function trackPage(m) {
    var page = { url: String(m.url || "").slice(0, 4096), title: String(m.title || "").slice(0, 2048), referrer: String(m.ref || "").slice(0, 4096) };
    if (!S.token) { S.pages.push(page); return; }
    api("POST", "/page-views", page).catch(function () {});
  }

  // ---- identify, then history, then live updates
  // Resolves once the visitor is known; sending waits for it, so a fast first
  // message can't race ahead of the token.
  var identified, resolveIdentified;
  identified = new Promise(function (r) { resolveIdentified = r; });
  var identifyTries = 0;
  function identify() {
    S.token = load() || S.hostToken || null;
    api("POST", "/visitor", {}).then(function (j) {
      identifyTries = 0;
      if (j.visitor_token) { S.token = j.visitor_token; save(j.visitor_token); }
      else if (S.token !== load()) save(S.token);
      S.visitor = j.visitor; S.maxBody = j.widget.max_body; S.closedNow = !j.widget.open_now;
      $("title").textContent = j.widget.name;
      $("welcome").textContent = j.widget.welcome_message || "Hi! How can we help?";
      root.style.setProperty("--c", j.widget.color);
      S.agents = -1; setAgents(j.agents_online);
      who.hidden = !!(j.visitor.name || j.visitor.email || j.conversation);
      if (j.conversation) {
        setConversation(j.conversation);
        stream.polled(j.messages, 0, true);
        S.unread = j.conversation.unread; notifyUnread(); live();
      }
      S.pages.splice(0).forEach(trackPage);
      root.dataset.ready = "1";
      resolveIdentified();
    }).catch(function (e) {
      if (e.status === 401) { save(null); S.token = null; return identify(); } // stale or foreign token
      if (e.status === 429) { showBanner(e.message); }
      else presence.textContent = "Can't connect · retrying…";
      setTimeout(identify, backoff(identifyTries++));
    });
  }

  // ---- live transport: WebSocket first, polling whenever the socket isn't ready
  var stream = crmStream.create({
    prefix: "v", show: show,
    state: function (m, again) { render(m); if (m.failed) showBanner(m.error); else if (again) showBanner(""); },
    push: function (m) { return link.send({ type: "send", body: m.body, client_id: m.client_id }); },
    post: function (m) {
      return api("POST", "/conversations/" + S.conv.id + "/messages", { body: m.body, client_id: m.client_id })
        .then(function (j) { setConversation(j.conversation); showBanner(""); link.poll(0); return j.message; });
    },
    sync: function (since) { link.send({ type: "sync", since: since }); },
  });
  var link = crmStream.socket({
    path: cfg.ws, ping: 25000, poll: poll, // the heartbeat keeps us "online" for agents
    open: function (send) { stream.opened(); send({ type: "auth", token: S.token, conversation: S.conv.id, since: stream.cursor }); },
    down: function () { root.dataset.transport = "poll"; },
    frame: function (ev) {
      if (stream.frame(ev)) return;
      if (ev.type === "ready") {
        root.dataset.transport = "ws";
        setAgents(ev.agents_online); if (ev.conversation) setConversation(ev.conversation);
        stream.resend(); markRead();
      }
      else if (ev.type === "pong") {
        if ("agents_online" in ev) setAgents(ev.agents_online);
        stream.behind(ev.last_seq);
      }
      else if (ev.type === "status") setConversation(Object.assign({}, S.conv, { status: ev.status }));
      else if (ev.type === "read" && ev.reader === "user") { if (ev.up_to_seq > S.readUpTo) { S.readUpTo = ev.up_to_seq; refreshStates(); } }
      else if (ev.type === "typing" && ev.sender_type === "user") typing(ev);
      else if (ev.type === "presence") setAgents(ev.agents_online);
      else if (ev.type === "error") showBanner(ev.message);
    },
  });
  function live() { link.poll(0); link.start(); }
  function poll() {
    if (link.ready || !S.conv) return;
    api("GET", "/conversations/" + S.conv.id + "/messages?since=" + stream.cursor).then(function (j) {
      if (!link.ready) root.dataset.transport = "poll";
      showBanner(""); setAgents(j.agents_online); setConversation(j.conversation);
      stream.polled(j.messages, !j.more && j.conversation.last_seq);
      stream.resend();
      link.poll(j.more ? 0 : S.open && !document.hidden ? 3000 : 15000);
    }).catch(function (e) {
      presence.textContent = "Reconnecting…"; S.agents = -1;
      if (e.status === 401) { save(null); S.token = null; S.conv = null; identify(); return; }
      link.poll(e.retry ? e.retry * 1000 : 5000);
    });
  }

  // ---- sending: idempotent by client_id, so retries can never duplicate a message
  function send(text) {
    var m = stream.add({ body: text, sender_type: "visitor", sender_name: "You", created_at: new Date().toISOString() });
    place(m); scrollDown();
    ensureConversation().then(function () { stream.deliver(m); }).catch(function (e) { stream.fail(m, e.message); });
  }
  function ensureConversation() {
    return identified.then(openConversation);
  }
  function openConversation() {
    if (S.conv) return S.conv;
    var name = $("who-name").value.trim(), email = $("who-email").value.trim();
    var details = name || email ? api("PATCH", "/visitor", { name: name || null, email: email || null }) : Promise.resolve(S.visitor);
    return details.then(function (v) {
      S.visitor = v; who.hidden = true;
      return api("POST", "/conversations", {});
    }).then(function (j) {
      setConversation(j.conversation);
      stream.polled(j.messages, 0);
      live(); return S.conv;
    })
      .catch(function (e) { if (e.status === 422) { $("who-error").textContent = e.message; $("who-error").hidden = false; } throw e; });
  }

  // ---- composer: Enter sends, Shift+Enter adds a line
  var lastTyping = 0;
  body.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  body.addEventListener("input", function () {
    body.style.height = "auto"; body.style.height = Math.min(body.scrollHeight, 120) + "px";
    var now = Date.now();
    if (now - lastTyping > 2500) { lastTyping = now; link.send({ type: "typing", typing: true }); }
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var text = body.value.trim();
    if (!text) return;
    if (text.length > S.maxBody) { showBanner("Messages can be at most " + S.maxBody + " characters."); return; }
    body.value = ""; body.style.height = "auto"; lastTyping = 0;
    link.send({ type: "typing", typing: false });
    send(text);
  });

  // Opened directly rather than framed: show the chat at once. Framed: wait (briefly)
  // for the host page's first message, which carries its copy of the token.
  var helloed;
  var hello = new Promise(function (r) { helloed = r; });
  if (!framed) { root.classList.add("phone"); setOpen(true); helloed(); }
  Promise.race([hello, new Promise(function (r) { setTimeout(r, 3000); })]).then(identify);
})();
