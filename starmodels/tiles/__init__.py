"""Crowded-field catalog inference on image tiles (the BLISS / StarNet capability).

An image is cut into square tiles of a few pixels; each tile holds up to a few point sources. The
package holds tile and full catalogs (:mod:`~starmodels.tiles.catalog`), the prior over tile catalogs
as a NumPyro program and a fast sampler (:mod:`~starmodels.tiles.prior`), a renderer that places PSF
stamps at sub-pixel positions (:mod:`~starmodels.tiles.render`), a batched simulator
(:mod:`~starmodels.tiles.simulate`), an amortized encoder (:mod:`~starmodels.tiles.encoder`) and its
training (:mod:`~starmodels.tiles.train`), real multi-band fields (:mod:`~starmodels.tiles.field`) and
catalog scoring (:mod:`~starmodels.tiles.metrics`).
"""
