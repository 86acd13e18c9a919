"""Task functions behind the root scripts."""

from wmseg.tasks.resolvers import register_resolvers

register_resolvers()
