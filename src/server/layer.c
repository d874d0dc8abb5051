// placeholder so the layer library is never empty
// SPDX-License-Identifier: MIT
int lfmd_server_layer_present;
