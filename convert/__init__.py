"""Caffe, exactly: the file formats, the layers and the net, mirrored in PyTorch and ONNX."""
