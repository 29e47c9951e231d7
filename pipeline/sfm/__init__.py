"""Structure-from-motion kernels: pair selection, the pycolmap bridge, mapping and adjustment, georegistration."""
