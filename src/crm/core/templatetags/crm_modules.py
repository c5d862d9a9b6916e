"""``{% haschatenabled %}…{% endhaschatenabled %}``: the port of the original's
``@haschatenabled`` Blade directive. Loaded as a template builtin."""

from __future__ import annotations

from django import template
from django.template.base import NodeList, Parser, Token
from django.template.context import Context

from crm.conf import module_enabled

register = template.Library()


class ModuleEnabledNode(template.Node):
    def __init__(self, module: str, nodelist: NodeList) -> None:
        self.module = module
        self.nodelist = nodelist

    def render(self, context: Context) -> str:
        if module_enabled(self.module):
            return self.nodelist.render(context)
        return ""


@register.tag("haschatenabled")
def haschatenabled(parser: Parser, token: Token) -> ModuleEnabledNode:
    nodelist = parser.parse(("endhaschatenabled",))
    parser.delete_first_token()
    return ModuleEnabledNode("chat", nodelist)
