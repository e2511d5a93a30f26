// A restricted reader of PyTorch's zip checkpoints (torch.save since 1.6: `.bin`, `.pt`, `.ckpt`):
// the zip central directory, validated, and a pickle-opcode interpreter that builds plain values and
// tensors and never runs code. Only an allow-list of globals is accepted (OrderedDict, the tensor and
// parameter rebuild functions, the float storage types); any other global is refused by name.
//
// The format, as torch.save writes it: a zip archive of stored (uncompressed) entries under one folder
// `<name>/`: `data.pkl` (a protocol-2 pickle of the saved object), `data/<key>` (the raw little-endian
// bytes of each storage), `version`, and in newer releases `byteorder` and `.data/serialization_id`.
// In the pickle a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
// requires_grad, hooks)` where `storage` is a persistent id `("storage", <torch.XStorage>, key,
// location, numel)` resolved by BINPERSID; `_rebuild_parameter(tensor, requires_grad, hooks)` wraps a
// parameter; a state dict is `collections.OrderedDict` with its items and a `_metadata` BUILD state.
//
// The parts live in data/torch_zip/: values (the result types), zip (the archive layer), pickle (the
// restricted unpickler), read, write.
export type { TorchTensor, PyValue, TorchZipOptions } from "./torch_zip/values.ts";
export { PyTuple } from "./torch_zip/values.ts";
export { zipStored } from "./torch_zip/zip.ts";
export { sniffTorchFile, isTorchZip, readTorchZip } from "./torch_zip/read.ts";
export type { TorchTensorInput, PyInput } from "./torch_zip/write.ts";
export { writeTorchZip } from "./torch_zip/write.ts";
