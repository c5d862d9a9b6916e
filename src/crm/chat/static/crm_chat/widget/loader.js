// crm-chat loader: injected by the embed snippet on the host page. Budget: 1 KB gzipped.
// Served per widget by crm.chat.views.public.loader, which fills in __CONFIG__
// (o: CRM origin, k: public key, p: position, a: allowed origins) and minifies it.
// The launcher button lives inside the iframe (served by the CRM, where it can be
// rich); this script only places the frame, resizes it on request and reports pages.
// Styles are set through the CSSOM, which a host page's CSP does not block.
// The visitor token is also kept in the host page's own storage: browsers that block
// third-party storage would otherwise give the visitor a new identity on every load.
(function (w, d, c) {
  // Once per page, and only on sites the widget allows (the iframe's CSP refuses others).
  if (w.__crmChat || (c.a.length && c.a.indexOf(location.origin) < 0)) return;
  w.__crmChat = 1;
  var f = d.createElement("iframe"), o = 0, K = "crmchat:" + c.k, v, ph;
  function P(m) { f.contentWindow && f.contentWindow.postMessage(m, c.o); }
  function G() {
    try { v = localStorage[K]; } catch (e) {}
    P({ t: "page", url: location.href, title: d.title, ref: d.referrer, tok: v, ph: ph });
  }
  function F() {
    // Closed: just the launcher's corner. Open: a panel, or the whole screen on phones
    // (the iframe is told which, since its own width can't tell a phone from a panel).
    ph = w.innerWidth < 480;
    f.style.cssText = "position:fixed;border:0;z-index:2147483647;background:none;color-scheme:normal;bottom:0;" +
      (c.p == "bottom-left" ? "left:0;" : "right:0;") +
      (!o ? "width:96px;height:96px" : ph ? "width:100%;height:100%" : "width:420px;height:min(680px,100%)");
    P({ t: "mode", ph: ph });
  }
  f.src = c.o + "/p/chat/" + c.k;
  f.title = "Chat";
  F();
  w.addEventListener("resize", F);
  // Single-page apps: history navigation is reported as page views too.
  ["pushState", "replaceState"].forEach(function (k) {
    var h = history[k];
    history[k] = function () { var r = h.apply(this, arguments); G(); return r; };
  });
  w.addEventListener("popstate", G);
  w.addEventListener("hashchange", G);
  w.addEventListener("message", function (e) {
    // Only our own iframe, from the CRM's exact origin, may resize the frame or store.
    var m = e.data || {};
    if (e.origin != c.o || e.source != f.contentWindow) return;
    if (m.t == "size") o = m.open, F();
    if (m.t == "token") try { m.v ? localStorage[K] = m.v : localStorage.removeItem(K); } catch (x) {}
  });
  // The iframe learns our origin from this first message, sent again on every load.
  f.onload = G;
  // An async script in <head> may run before <body> exists.
  d.body ? d.body.append(f) : d.addEventListener("DOMContentLoaded", function () { d.body.append(f); });
})(window, document, __CONFIG__);
