"""llmchat's own CPU forward pass for Llama-shaped models (`llama`), its quantized linears over
torch's packed kernels (`quant`), reading and packing weights (`weights`) and loading with the
packed-weight cache (`load`)."""
