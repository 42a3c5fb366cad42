"""The hooks a temporec plugin may implement. This module is their documentation.

A plugin is a module exposed through an entry point in the group ``temporec``::

    [project.entry-points.temporec]
    my_head = "my_package.my_head"

and implements any of the hooks below with ``@temporec.hookimpl``. Each hook receives a
``register`` callback and calls it once per component, with the component's class.
The class's ``name`` attribute is the name clients use in requests; names are unique
per kind, and a second registration of a taken name is refused and reported.
"""

import pluggy

hookspec = pluggy.HookspecMarker("temporec")


@hookspec
def register_heads(register):
    """Register temporal heads.

    Call ``register(HeadClass)`` for each; ``HeadClass`` subclasses ``temporec.Head``:
    a ``torch.nn.Module`` that reads a batch of event vectors and predicts, at every
    position, the user state in item space (see ``temporec.contract.heads.Head``).
    """


@hookspec
def register_domains(register):
    """Register domain recommenders.

    Call ``register(DomainClass)`` for each; ``DomainClass`` subclasses
    ``temporec.Domain``: it owns the field's action vocabulary, data readers,
    business rules, and how its models are trained and evaluated (``Domain.train``,
    ``Domain.evaluate``; see ``temporec.contract.domains.Domain``).
    """


@hookspec
def register_encoders(register):
    """Register text encoders.

    Call ``register(EncoderClass)`` for each; ``EncoderClass`` subclasses
    ``temporec.Encoder``: it turns texts into L2-normalized vectors
    (see ``temporec.contract.encoders.Encoder``). The server instantiates it with the options of
    its ``[encoders.<name>]`` configuration table as keyword arguments.
    """


@hookspec
def register_stores(register):
    """Register event stores.

    Call ``register(StoreClass)`` for each; ``StoreClass`` subclasses ``temporec.Store``:
    users' tracked events, kept between requests (see ``temporec.contract.stores.Store``).
    Its ``name`` is the URL scheme that selects it: the server's ``store`` setting
    ``sqlite:///path/history.db`` opens the store named ``sqlite`` with that URL.
    """
