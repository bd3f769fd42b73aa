"""Interactive video object segmentation (MiVOS-STCN): scribbles -> S2M -> STCN propagation -> fusion."""
