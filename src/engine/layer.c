// placeholder so the layer library is never empty
// SPDX-License-Identifier: MIT
int lfmd_engine_layer_present;
