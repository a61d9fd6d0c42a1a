"""Losses: cross entropy (ignore, class weights, OHEM) and the papers' own losses.

Every module of this package is imported and every name in its ``__all__`` is exported here
(`contextseg.exports.export_modules`): a new file needs no edit of this one."""

from ..exports import export_modules

__all__ = export_modules(__name__, __path__, globals())
