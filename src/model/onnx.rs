//! Reading a VGG16 `.onnx` file's weights as data: a small protobuf reader for the parts of
//! ONNX's `ModelProto` that hold them, and the matching of convolution and dense initializers
//! by graph order and shape.
//!
//! Only the graph's nodes (`Conv`, `Gemm`, `MatMul`, `Add`, `Transpose`) and initializers are
//! read; nothing is executed. Kernels that reach a `Conv` through a `Transpose` are permuted, so
//! both ONNX's OIHW and Keras's HWIO layouts load. A graph whose input is NHWC (a Keras or
//! TensorFlow export) flattens block 5 in H, W, C order: its first dense layer's rows are
//! reordered to torchvision's C, H, W.

use std::collections::HashMap;

use super::raw::{Endian, FloatKind, RawTensor, checked_len, decode_floats};

/// A protobuf field as read off the wire.
#[derive(Clone, Copy, Debug)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over the fields of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or("the file ends inside a number (truncated?)")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is longer than 64 bits (not an ONNX file?)".to_owned())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or("the file ends inside a field (truncated?)")?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn next_field(&mut self) -> Option<Result<(u64, Value<'a>), String>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u64, Value<'a>), String> {
        let key = self.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| "bad fixed64")?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "field too long")?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| "bad fixed32")?,
            )),
            other => {
                return Err(format!(
                    "unsupported protobuf wire type {other} (not an ONNX file?)"
                ));
            }
        };
        Ok((field, value))
    }
}

/// Calls `f` for every field of `buf`.
fn each_field<'a>(
    buf: &'a [u8],
    mut f: impl FnMut(u64, Value<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut fields = Fields::new(buf);
    while let Some(field) = fields.next_field() {
        let (n, v) = field?;
        f(n, v)?;
    }
    Ok(())
}

fn string(v: Value<'_>) -> Result<String, String> {
    match v {
        Value::Bytes(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err("expected a string".to_owned()),
    }
}

/// Reads repeated int64s, packed or not.
fn push_ints(v: Value<'_>, out: &mut Vec<i64>) -> Result<(), String> {
    match v {
        Value::Varint(x) => out.push(x as i64),
        Value::Bytes(b) => {
            let mut f = Fields::new(b);
            while f.pos < b.len() {
                out.push(f.varint()? as i64);
            }
        }
        _ => return Err("expected integers".to_owned()),
    }
    Ok(())
}

/// One initializer.
#[derive(Debug, Default)]
struct TensorProto {
    name: String,
    dims: Vec<i64>,
    data_type: i64,
    raw: Vec<u8>,
    floats: Vec<f32>,
    doubles: Vec<f64>,
    external: bool,
}

fn parse_tensor(buf: &[u8]) -> Result<TensorProto, String> {
    let mut t = TensorProto::default();
    each_field(buf, |n, v| {
        match (n, v) {
            (1, v) => push_ints(v, &mut t.dims)?,
            (2, Value::Varint(x)) => t.data_type = x as i64,
            (4, Value::Fixed32(x)) => t.floats.push(f32::from_bits(x)),
            (4, Value::Bytes(b)) => t.floats.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            (8, v) => t.name = string(v)?,
            (9, Value::Bytes(b)) => t.raw = b.to_vec(),
            (10, Value::Fixed64(x)) => t.doubles.push(f64::from_bits(x)),
            (10, Value::Bytes(b)) => t.doubles.extend(
                b.chunks_exact(8)
                    .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
            ),
            (13, _) => t.external = true,
            (14, Value::Varint(1)) => t.external = true,
            _ => {}
        }
        Ok(())
    })?;
    Ok(t)
}

impl TensorProto {
    fn to_raw(&self) -> Result<RawTensor, String> {
        if self.external {
            return Err(format!(
                "initializer '{}' keeps its data in an external file; save the model with its \
                 weights inside the .onnx",
                self.name
            ));
        }
        let shape = self
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
            .map_err(|_| {
                format!(
                    "initializer '{}' has a negative dimension {:?}",
                    self.name, self.dims
                )
            })?;
        let n = checked_len(&self.name, &shape)?;
        let data: Vec<f32> = match self.data_type {
            1 if !self.raw.is_empty() => decode_floats(FloatKind::F32, &self.raw, Endian::Little),
            1 => self.floats.clone(),
            10 => decode_floats(FloatKind::F16, &self.raw, Endian::Little),
            16 => decode_floats(FloatKind::BF16, &self.raw, Endian::Little),
            11 if !self.raw.is_empty() => decode_floats(FloatKind::F64, &self.raw, Endian::Little),
            11 => self.doubles.iter().map(|&d| d as f32).collect(),
            other => {
                return Err(format!(
                    "initializer '{}' has ONNX data type {other}, not a float type",
                    self.name
                ));
            }
        };
        if data.len() != n {
            return Err(format!(
                "initializer '{}' holds {} values but its shape {:?} needs {n} (truncated file?)",
                self.name,
                data.len(),
                shape
            ));
        }
        RawTensor::new(&self.name, shape, data)
    }
}

/// One graph node.
#[derive(Debug, Default)]
struct Node {
    op_type: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    perm: Vec<i64>,
    trans_b: bool,
}

fn parse_node(buf: &[u8]) -> Result<Node, String> {
    let mut node = Node::default();
    each_field(buf, |n, v| {
        match n {
            1 => node.inputs.push(string(v)?),
            2 => node.outputs.push(string(v)?),
            4 => node.op_type = string(v)?,
            5 => {
                if let Value::Bytes(attr) = v {
                    let mut name = String::new();
                    let mut ints = Vec::new();
                    let mut int = 0i64;
                    each_field(attr, |an, av| {
                        match an {
                            1 => name = string(av)?,
                            3 => {
                                if let Value::Varint(x) = av {
                                    int = x as i64;
                                }
                            }
                            8 => push_ints(av, &mut ints)?,
                            _ => {}
                        }
                        Ok(())
                    })?;
                    match name.as_str() {
                        "perm" => node.perm = ints,
                        "transB" => node.trans_b = int != 0,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(node)
}

/// What an ONNX file holds, in torchvision's names and layouts.
#[derive(Debug)]
pub struct OnnxWeights {
    /// `features.{0,2,…,28}.{weight,bias}` and, where shapes allow, `classifier.{0,3,6}.*`.
    pub tensors: HashMap<String, RawTensor>,
    /// True when the graph takes NHWC input (a Keras/TensorFlow export, so Caffe preprocessing).
    pub nhwc_input: bool,
    /// The dense layers found, as (inputs, outputs), in graph order.
    pub dense_shapes: Vec<(usize, usize)>,
}

/// An ONNX graph's nodes, initializers and first input's name.
struct Graph {
    nodes: Vec<Node>,
    initializers: HashMap<String, TensorProto>,
    first_input: Option<String>,
}

/// Parses the parts of `ModelProto.graph` that hold the weights.
fn parse_graph(bytes: &[u8]) -> Result<Graph, String> {
    let mut graph = None;
    each_field(bytes, |n, v| {
        if let (7, Value::Bytes(b)) = (n, v) {
            graph = Some(b);
        }
        Ok(())
    })?;
    let graph = graph.ok_or("no graph in the file (not an ONNX model)")?;
    let mut nodes = Vec::new();
    let mut initializers: HashMap<String, TensorProto> = HashMap::new();
    let mut first_input = None;
    each_field(graph, |n, v| {
        match (n, v) {
            (1, Value::Bytes(b)) => nodes.push(parse_node(b)?),
            (5, Value::Bytes(b)) => {
                let t = parse_tensor(b)?;
                initializers.insert(t.name.clone(), t);
            }
            (11, Value::Bytes(b)) if first_input.is_none() => {
                each_field(b, |vn, vv| {
                    if vn == 1 {
                        first_input = Some(string(vv)?);
                    }
                    Ok(())
                })?;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(Graph {
        nodes,
        initializers,
        first_input,
    })
}

impl Graph {
    /// True when a Transpose straight after the input turns it to NCHW: an NHWC (Keras or
    /// TensorFlow) graph.
    fn nhwc_input(&self) -> bool {
        self.nodes.iter().any(|node| {
            node.op_type == "Transpose"
                && node.perm == [0, 3, 1, 2]
                && self
                    .first_input
                    .as_ref()
                    .is_some_and(|i| node.inputs.first() == Some(i))
        })
    }

    /// The constant a node's input `slot` names: an initializer, or one through a Transpose.
    fn constant(&self, node: &Node, slot: usize) -> Result<Option<RawTensor>, String> {
        let Some(name) = node.inputs.get(slot) else {
            return Ok(None);
        };
        if let Some(t) = self.initializers.get(name) {
            return t.to_raw().map(Some);
        }
        let producer = self
            .nodes
            .iter()
            .find(|n| n.op_type == "Transpose" && n.outputs.first() == Some(name));
        match producer.and_then(|n| n.inputs.first().map(|src| (n, src))) {
            Some((node, src)) => match self.initializers.get(src.as_str()) {
                Some(t) => Ok(Some(t.to_raw()?.permuted(&node.perm)?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// A dense layer's weight as [out, in] and its bias, from a Gemm or a MatMul (whose bias is
    /// the constant of the Add that consumes its output); `None` when the node has no constant
    /// 2-D weight.
    fn dense(&self, i: usize) -> Result<Option<(RawTensor, Option<RawTensor>)>, String> {
        let node = &self.nodes[i];
        let Some(w) = self.constant(node, 1)? else {
            return Ok(None);
        };
        if w.shape.len() != 2 {
            return Ok(None);
        }
        // torchvision stores [out, in]; MatMul and Gemm without transB hold [in, out].
        let gemm = node.op_type == "Gemm";
        let w = if gemm && node.trans_b {
            w
        } else {
            w.permuted(&[1, 0])?
        };
        let bias = if gemm {
            self.constant(node, 2)?
        } else {
            let out = node.outputs.first();
            match self.nodes[i + 1..]
                .iter()
                .find(|n| n.op_type == "Add" && n.inputs.first() == out)
            {
                Some(add) => self.constant(add, 1)?,
                None => None,
            }
        };
        Ok(Some((w, bias)))
    }
}

/// Reads the convolution and dense weights of a VGG16 ONNX file.
pub fn read_onnx(bytes: &[u8]) -> Result<OnnxWeights, String> {
    let graph = parse_graph(bytes)?;
    let nhwc_input = graph.nhwc_input();
    let mut tensors = HashMap::new();
    let mut conv_count = 0;
    let mut last_channels = 0;
    let mut dense: Vec<(RawTensor, Option<RawTensor>)> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        match node.op_type.as_str() {
            "Conv" => {
                let idx = *super::vgg::TORCHVISION_CONV_INDICES
                    .get(conv_count)
                    .ok_or("more than 13 convolutions: not a VGG16 graph")?;
                let weight = graph.constant(node, 1)?.ok_or_else(|| {
                    format!("convolution {} has no constant kernel", conv_count + 1)
                })?;
                last_channels = weight.shape.first().copied().unwrap_or(0);
                tensors.insert(format!("features.{idx}.weight"), weight);
                if let Some(bias) = graph.constant(node, 2)? {
                    tensors.insert(format!("features.{idx}.bias"), bias);
                }
                conv_count += 1;
            }
            "Gemm" | "MatMul" => {
                // Dense layers chain from the pooled features (channels × 7 × 7 inputs); other
                // products (an adaptive pool written as MatMuls) are not layers.
                let wanted = match dense.last() {
                    Some((w, _)) => w.shape[0],
                    None => last_channels * super::vgg::POOLED_SIDE * super::vgg::POOLED_SIDE,
                };
                if let Some((w, bias)) = graph.dense(i)?
                    && w.shape[1] == wanted
                {
                    dense.push((w, bias));
                }
            }
            _ => {}
        }
    }
    if conv_count == 0 {
        return Err("no convolution found: not a VGG16 ONNX model".to_owned());
    }
    let dense_shapes = dense
        .iter()
        .map(|(w, _)| (w.shape[1], w.shape[0]))
        .collect();
    for (j, (mut w, bias)) in dense.into_iter().enumerate().take(3) {
        let idx = super::vgg::TORCHVISION_DENSE_INDICES[j];
        if j == 0 && nhwc_input {
            w = w.inputs_hwc_to_chw(super::vgg::POOLED_SIDE)?;
        }
        tensors.insert(format!("classifier.{idx}.weight"), w);
        if let Some(b) = bias {
            tensors.insert(format!("classifier.{idx}.bias"), b);
        }
    }
    Ok(OnnxWeights {
        tensors,
        nhwc_input,
        dense_shapes,
    })
}
