"""Task functions behind the root scripts. Importing this package registers what Hydra
needs before it composes a config: the resolvers and the config nodes made from code."""

from wmseg.tasks.config_nodes import register_config_nodes
from wmseg.tasks.resolvers import register_resolvers

register_resolvers()
register_config_nodes()
