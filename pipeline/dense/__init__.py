"""Dense reconstruction kernels: neighbour views, rectified stereo, consistency, fusion, tiles."""
