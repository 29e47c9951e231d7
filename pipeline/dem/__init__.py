"""DEM kernels: gridding and hole filling, ground and building classification, DSM/DTM tiles."""
