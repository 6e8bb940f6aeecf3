// placeholder until the kernel build lands
