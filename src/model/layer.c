// placeholder so the layer library is never empty
// SPDX-License-Identifier: MIT
int lfmd_model_layer_present;
