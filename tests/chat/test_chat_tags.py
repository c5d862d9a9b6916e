"""Display helpers of the inbox templates."""

from __future__ import annotations

from django.template import Context, Template

from crm.chat.templatetags.chat_tags import email_breaks


def test_an_address_may_wrap_before_its_at_sign_and_dots() -> None:
    assert email_breaks("maya.patel@example.org") == "maya<wbr>.patel<wbr>@example<wbr>.org"
    assert email_breaks("") == ""


def test_the_address_is_escaped_around_the_breaks() -> None:
    html = Template("{% load chat_tags %}{{ v|email_breaks }}").render(
        Context({"v": '"><script>x.y()</script>@a.b'})
    )
    assert "<script>" not in html
    assert html == "&quot;&gt;&lt;script&gt;x<wbr>.y()&lt;/script&gt;<wbr>@a<wbr>.b"
