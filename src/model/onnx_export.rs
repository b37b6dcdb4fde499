//! Writing a trained classifier as one ONNX file (opset 13) that runs wherever ONNX does:
//! onnxruntime (Python, C++, C#, Java, the browser's onnxruntime-web, phones), OpenCV's `dnn`.
//!
//! The graph, with the batch size left dynamic:
//! `image` (float32, RGB, NCHW, [batch, 3, S, S], pixel values 0–255, the photo already made
//! square as the `resize` metadata says) → the weights' pixel normalisation (`Sub`, `Div`) →
//! 13 × (`Conv` 3×3, `Relu`) with a 2×2 `MaxPool` after each block → the adaptive average pool
//! to 7×7 (two `MatMul`s with constant pooling matrices, when block 5's output is not already
//! 7×7) → (`GlobalAveragePool`, for the pooled head) → `Flatten` → one `Gemm` per dense layer
//! (`Relu` between) → `Softmax` →
//! `probabilities` [batch, classes]. Dropout is training only and is not in the graph. Caffe
//! weights' BGR order is folded into the first convolution's kernel, so every export takes RGB.
//! Class names, the vggtune version and the preprocessing go into `metadata_props`.
//!
//! Written by hand: Burn reads ONNX (burn-import, onnx-ir) but writes none, and the dozen
//! messages VGG16 needs do not warrant a protobuf code generator in the build. Weights are
//! streamed into the file, never joined in memory. Every export is a single file: the largest
//! (full-width VGG16 with torchvision's head, 138 M parameters) is 553 MB, well under protobuf's
//! 2 GB message limit, and the writer refuses anything that would pass it rather than write a
//! file no reader can open.

use std::borrow::Cow;
use std::path::Path;

use super::bundle::BundleHeader;
use super::vgg::{POOL_AFTER, POOLED_SIDE, TORCHVISION_CONV_INDICES, Vgg16, adaptive_pool_matrix};
use super::weights::{RawTensor, torchvision_state_dict};
use crate::data::Convention;

/// The ONNX operator set the export uses (onnxruntime 1.6 and later, OpenCV 4.5 and later).
pub const OPSET: i64 = 13;
/// The IR version that goes with [`OPSET`].
const IR_VERSION: i64 = 7;
/// protobuf's hard limit on one message: no reader parses a larger single-file model.
const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;
/// The graph's input and output names.
pub const INPUT_NAME: &str = "image";
/// See [`INPUT_NAME`].
pub const OUTPUT_NAME: &str = "probabilities";
/// The photo's pooled block-5 features: what the *none of these* verdict compares.
pub const FEATURES_NAME: &str = "features";
/// The distance to the k-th nearest training photo, computed in the graph from the training
/// features it holds (models that keep them).
pub const DISTANCE_NAME: &str = "typicality_distance";

// ONNX's enum values.
const FLOAT: i64 = 1;
const INT64: i64 = 7;
const ATTR_INT: i64 = 2;
const ATTR_INTS: i64 = 7;

/// A protobuf message being written: fields appended in any order (protobuf allows it).
#[derive(Default)]
struct Message(Vec<u8>);

fn put_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8 & 0x7F) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

impl Message {
    fn tag(&mut self, field: u64, wire: u64) {
        put_varint(&mut self.0, (field << 3) | wire);
    }

    fn int(&mut self, field: u64, value: i64) -> &mut Self {
        self.tag(field, 0);
        put_varint(&mut self.0, value as u64);
        self
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) -> &mut Self {
        self.tag(field, 2);
        put_varint(&mut self.0, bytes.len() as u64);
        self.0.extend_from_slice(bytes);
        self
    }

    fn string(&mut self, field: u64, text: &str) -> &mut Self {
        self.bytes(field, text.as_bytes())
    }

    fn message(&mut self, field: u64, inner: &Message) -> &mut Self {
        self.bytes(field, &inner.0)
    }

    /// The start of a length-delimited field whose `len` bytes the caller writes next.
    fn open(&mut self, field: u64, len: u64) {
        self.tag(field, 2);
        put_varint(&mut self.0, len);
    }
}

/// A node attribute.
enum Attr<'a> {
    Int(&'a str, i64),
    Ints(&'a str, &'a [i64]),
}

/// A piece of the graph message: encoded fields, or an initializer's floats (streamed).
enum Piece<'a> {
    Encoded(Vec<u8>),
    Floats(Cow<'a, [f32]>),
}

impl Piece<'_> {
    fn len(&self) -> u64 {
        match self {
            Self::Encoded(b) => b.len() as u64,
            Self::Floats(f) => 4 * f.len() as u64,
        }
    }
}

/// The graph as it is built: nodes and initializers in order.
#[derive(Default)]
struct Graph<'a> {
    pieces: Vec<Piece<'a>>,
    nodes: usize,
    /// Appended to every node's output name (the mirror image's pass repeats the network's
    /// nodes on the same initializers).
    suffix: &'static str,
    /// The initializers' names.
    initializers: std::collections::HashSet<String>,
}

impl<'a> Graph<'a> {
    /// Adds a node computing `output` (with the graph's suffix) from `inputs`; returns the
    /// output's name.
    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attrs: &[Attr]) -> String {
        self.node_outputs(op, inputs, &[output], attrs)
    }

    /// [`Self::node`] with several outputs; returns the first's name.
    fn node_outputs(
        &mut self,
        op: &str,
        inputs: &[&str],
        outputs: &[&str],
        attrs: &[Attr],
    ) -> String {
        let outputs: Vec<String> = outputs
            .iter()
            .map(|o| format!("{o}{}", self.suffix))
            .collect();
        let mut node = Message::default();
        for input in inputs {
            node.string(1, input);
        }
        for output in &outputs {
            node.string(2, output);
        }
        node.string(3, &format!("{op}_{}", self.nodes))
            .string(4, op);
        for attr in attrs {
            let mut a = Message::default();
            match *attr {
                Attr::Int(name, value) => {
                    a.string(1, name).int(20, ATTR_INT).int(3, value);
                }
                Attr::Ints(name, values) => {
                    a.string(1, name).int(20, ATTR_INTS);
                    for &v in values {
                        a.int(8, v);
                    }
                }
            }
            node.message(5, &a);
        }
        self.nodes += 1;
        let mut field = Message::default();
        field.message(1, &node);
        self.pieces.push(Piece::Encoded(field.0));
        outputs.into_iter().next().unwrap_or_default()
    }

    /// Adds a one-value int64 initializer (TopK's K); returns its name.
    fn int64_initializer(&mut self, name: &str, value: i64) -> String {
        let mut tensor = Message::default();
        tensor
            .int(1, 1)
            .int(2, INT64)
            .string(8, name)
            .bytes(9, &value.to_le_bytes());
        let mut field = Message::default();
        field.message(5, &tensor);
        self.pieces.push(Piece::Encoded(field.0));
        name.to_owned()
    }

    /// Adds a float initializer named `name`; returns the name. A name already in the graph is
    /// the same constant (the mirror image's pass asks again for what the first pass made), so
    /// it is not written twice.
    fn initializer(&mut self, name: &str, dims: &[usize], data: Cow<'a, [f32]>) -> String {
        if !self.initializers.insert(name.to_owned()) {
            return name.to_owned();
        }
        let mut header = Message::default();
        for &d in dims {
            header.int(1, d as i64);
        }
        header.int(2, FLOAT).string(8, name);
        let data_len = 4 * data.len() as u64;
        header.open(9, data_len);
        let mut field = Message::default();
        field.open(5, header.0.len() as u64 + data_len);
        field.0.extend_from_slice(&header.0);
        self.pieces.push(Piece::Encoded(field.0));
        self.pieces.push(Piece::Floats(data));
        name.to_owned()
    }

    fn value_info(&mut self, field: u64, name: &str, dims: &[Dim]) {
        let mut shape = Message::default();
        for dim in dims {
            let mut d = Message::default();
            match dim {
                Dim::Fixed(n) => d.int(1, *n as i64),
                Dim::Named(s) => d.string(2, s),
            };
            shape.message(1, &d);
        }
        let mut tensor = Message::default();
        tensor.int(1, FLOAT).message(2, &shape);
        let mut ty = Message::default();
        ty.message(1, &tensor);
        let mut info = Message::default();
        info.string(1, name).message(2, &ty);
        let mut out = Message::default();
        out.message(field, &info);
        self.pieces.push(Piece::Encoded(out.0));
    }
}

enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// The side of block 5's output for an input of `input_size` pixels (five 2×2 max-pools,
/// rounding down).
fn block5_side(input_size: u32) -> usize {
    (input_size as usize) >> POOL_AFTER.len()
}

/// What each `metadata_props` entry says: the class names (a JSON list), the input and output,
/// how to make a photo square, the preprocessing (JSON, as in the model file) and the version.
fn metadata(
    header: &BundleHeader,
    typicality: Option<&crate::typical::TypicalitySummary>,
) -> Vec<(&'static str, String)> {
    let size = header.preprocessing.input_size;
    let mut entries = verdict_metadata(header, typicality);
    entries.extend([
        (
            "classes",
            serde_json::to_string(&header.classes).unwrap_or_default(),
        ),
        (
            "input",
            format!(
                "{INPUT_NAME}: float32 [batch, 3, {size}, {size}], RGB planes (NCHW), pixel values 0-255; the model normalises them itself"
            ),
        ),
        ("resize", header.preprocessing.resize.describe(size)),
        (
            "output",
            format!(
                "{OUTPUT_NAME}: float32 [batch, classes], softmax over the classes in the order of 'classes'{}{}",
                if header.mirror_tta {
                    ", the mean of the photo's and its mirror image's (test-time augmentation)"
                } else {
                    ""
                },
                if header.square_tta {
                    format!(
                        "; vggtune also averages the photo made square the other way ({}), \
                         which needs the original photo: run this model on both squares and \
                         average the two outputs for the same predictions",
                        header.preprocessing.resize.other().describe(size)
                    )
                } else {
                    String::new()
                }
            ),
        ),
        (
            "preprocessing",
            serde_json::to_string(&header.preprocessing).unwrap_or_default(),
        ),
        ("vggtune_version", crate::VERSION_LINE.to_owned()),
    ]);
    entries
}

/// The metadata that says how to reproduce the calibrated confidence and the *none of these*
/// verdict from the graph's outputs.
fn verdict_metadata(
    header: &BundleHeader,
    typicality: Option<&crate::typical::TypicalitySummary>,
) -> Vec<(&'static str, String)> {
    let mut entries = vec![(
        "calibration",
        match &header.calibration {
            Some(c) => format!(
                "{OUTPUT_NAME} are calibrated: softmax(ln(p) / T) of the network's probabilities \
                 p, with T = {} fitted on {} validation photos",
                c.temperature, c.photos
            ),
            None => format!("{OUTPUT_NAME} are the network's own (no temperature fitted)"),
        },
    )];
    entries.push((
        "features",
        format!(
            "{FEATURES_NAME}: float32 [batch, channels], the global average of block 5's pooled \
             output for the photo as it is"
        ),
    ));
    if let Some(t) = typicality {
        entries.push((
            "none_of_these",
            format!(
                "{DISTANCE_NAME}: float32 [batch], the distance from the L2-normalised {FEATURES_NAME} \
                 to the {} nearest of {} training photos' (kept in the graph); a photo is \
                 'none of these' (unlike the photos the model was trained on) when it is above \
                 {} (the distance {:.0}% of the training photos are within, leave-one-out)",
                crate::typical::ordinal(t.k),
                t.count,
                t.threshold,
                100.0 * t.keep
            ),
        ));
        entries.push(("none_of_these_threshold", t.threshold.to_string()));
    }
    entries
}

/// The model's tensors in torchvision's order, taken one by one by name.
struct Params<'a>(
    std::iter::Peekable<std::slice::Iter<'a, (String, RawTensor)>>,
    /// Each layer's initializer names in the order taken, and where a second pass (the mirror
    /// image's) is in replaying them (`None`: taking).
    Vec<Vec<String>>,
    Option<usize>,
);

impl<'a> Params<'a> {
    /// The next tensor when it is `name`, as an initializer of `graph`.
    fn take(&mut self, graph: &mut Graph<'a>, name: &str) -> Option<String> {
        let (name, t) = self.0.next_if(|(n, _)| n == name)?;
        Some(graph.initializer(name, &t.shape, Cow::Borrowed(&t.data)))
    }

    /// A layer's weight (required) and bias (when it has one), after `x` in an input list.
    fn layer(
        &mut self,
        graph: &mut Graph<'a>,
        x: &str,
        layer: &str,
    ) -> Result<Vec<String>, String> {
        if let Some(i) = self.2.as_mut() {
            let names = self.1.get(*i).ok_or("the second pass has more layers")?;
            *i += 1;
            return Ok(std::iter::once(x.to_owned()).chain(names.clone()).collect());
        }
        let weight = self
            .take(graph, &format!("{layer}.weight"))
            .ok_or_else(|| format!("the model has no {layer}.weight where VGG16 has one"))?;
        let mut names = vec![weight];
        names.extend(self.take(graph, &format!("{layer}.bias")));
        self.1.push(names.clone());
        Ok(std::iter::once(x.to_owned()).chain(names).collect())
    }
}

/// Folds the weights' channel order (BGR for Caffe weights) into the first kernel, so the graph
/// takes RGB whatever the weights want.
fn fold_channel_order(tensors: &mut [(String, RawTensor)], convention: Convention) {
    if let Some((name, first)) = tensors.first_mut()
        && name == "features.0.weight"
        && let [out, 3, kh, kw] = first.shape[..]
    {
        let cell = kh * kw;
        let mut data = vec![0.0f32; first.data.len()];
        for o in 0..out {
            for plane in 0..3 {
                let rgb = convention.source_channel(plane);
                let (src, dst) = ((o * 3 + plane) * cell, (o * 3 + rgb) * cell);
                data[dst..dst + cell].copy_from_slice(&first.data[src..src + cell]);
            }
        }
        first.data = data;
    }
}

/// Pixels 0–255 → the weights' normalisation: `(x − mean) / scale` per channel.
fn normalise(graph: &mut Graph<'_>, convention: Convention, input: &str) -> String {
    let (mean, scale) = convention.pixel_mean_and_scale();
    let shape = [1, 3, 1, 1];
    let mean = graph.initializer("preprocess.mean", &shape, Cow::Owned(mean.to_vec()));
    let scale = graph.initializer("preprocess.scale", &shape, Cow::Owned(scale.to_vec()));
    let centred = graph.node("Sub", &[input, &mean], "preprocess.centred", &[]);
    graph.node("Div", &[&centred, &scale], "preprocess.normalised", &[])
}

/// The input's mirror image: each row reversed, as `x · J` with `J` the `side`×`side`
/// anti-diagonal of ones (exact: one product per output value).
fn mirrored_input(graph: &mut Graph<'_>, side: usize) -> String {
    let mut flip = vec![0.0f32; side * side];
    for i in 0..side {
        flip[i * side + (side - 1 - i)] = 1.0;
    }
    let flip = graph.initializer("mirror.matrix", &[side, side], Cow::Owned(flip));
    graph.node("MatMul", &[INPUT_NAME, &flip], "mirror.image", &[])
}

/// The 13 convolutions with their ReLUs and the max-pools after each block.
fn conv_base<'a>(
    graph: &mut Graph<'a>,
    params: &mut Params<'a>,
    mut x: String,
) -> Result<String, String> {
    for (i, idx) in TORCHVISION_CONV_INDICES.iter().enumerate() {
        let conv = format!("features.{idx}");
        let inputs = params.layer(graph, &x, &conv)?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let y = graph.node(
            "Conv",
            &inputs,
            &format!("{conv}.out"),
            &[
                Attr::Ints("kernel_shape", &[3, 3]),
                Attr::Ints("pads", &[1, 1, 1, 1]),
                Attr::Ints("strides", &[1, 1]),
            ],
        );
        x = graph.node("Relu", &[&y], &format!("{conv}.relu"), &[]);
        if POOL_AFTER.contains(&i) {
            x = graph.node(
                "MaxPool",
                &[&x],
                &format!("{conv}.pool"),
                &[
                    Attr::Ints("kernel_shape", &[2, 2]),
                    Attr::Ints("strides", &[2, 2]),
                ],
            );
        }
    }
    Ok(x)
}

/// The adaptive average pool from `side`×`side` to 7×7 as `rows · x · colsᵀ` (nothing when
/// `side` is 7).
fn adaptive_pool(graph: &mut Graph<'_>, x: String, side: usize) -> String {
    if side == POOLED_SIDE {
        return x;
    }
    let pool = adaptive_pool_matrix(side, POOLED_SIDE);
    let mut transposed = vec![0.0f32; pool.len()];
    for (i, row) in pool.chunks_exact(side).enumerate() {
        for (j, &v) in row.iter().enumerate() {
            transposed[j * POOLED_SIDE + i] = v;
        }
    }
    let cols = graph.initializer("avgpool.cols", &[side, POOLED_SIDE], Cow::Owned(transposed));
    let rows = graph.initializer("avgpool.rows", &[POOLED_SIDE, side], Cow::Owned(pool));
    let half = graph.node("MatMul", &[&x, &cols], "avgpool.half", &[]);
    graph.node("MatMul", &[&rows, &half], "avgpool.out", &[])
}

/// The pooled head's global average (when `pools`), flatten, then one Gemm per dense layer
/// (ReLU between), then softmax; returns the probabilities' name.
fn head<'a>(
    graph: &mut Graph<'a>,
    params: &mut Params<'a>,
    x: String,
    (dense_count, pools): (usize, bool),
) -> Result<String, String> {
    let x = if pools {
        graph.node("GlobalAveragePool", &[&x], "global_pool", &[])
    } else {
        x
    };
    let mut x = graph.node("Flatten", &[&x], "flatten", &[Attr::Int("axis", 1)]);
    for j in 0..dense_count {
        let dense = format!("classifier.{}", 3 * j);
        let inputs = params.layer(graph, &x, &dense)?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        x = graph.node(
            "Gemm",
            &inputs,
            &format!("{dense}.out"),
            &[Attr::Int("transB", 1)],
        );
        if j + 1 < dense_count {
            x = graph.node("Relu", &[&x], &format!("{dense}.relu"), &[]);
        }
    }
    Ok(graph.node("Softmax", &[&x], "softmax", &[Attr::Int("axis", 1)]))
}

/// Builds the graph of `model`'s inference (weights taken from `tensors`, in torchvision's names).
fn build_graph<'a>(
    header: &BundleHeader,
    tensors: &'a mut [(String, RawTensor)],
    typicality: Option<&crate::typical::Typicality>,
) -> Result<Graph<'a>, String> {
    let size = header.preprocessing.input_size;
    let side = block5_side(size);
    if side == 0 {
        return Err(format!(
            "an input of {size} px is too small for VGG16's five pools (32 px at least)"
        ));
    }
    let convention = header.preprocessing.convention;
    fold_channel_order(tensors, convention);
    let tensors: &'a [(String, RawTensor)] = tensors;
    let dense_count = tensors
        .iter()
        .filter(|(name, _)| name.starts_with("classifier.") && name.ends_with(".weight"))
        .count();
    let pools = header.model.head.pools_globally();
    let mut graph = Graph::default();
    let mut params = Params(tensors.iter().peekable(), Vec::new(), None);
    let network = |graph: &mut Graph<'a>, params: &mut Params<'a>, input: &str| {
        let x = normalise(graph, convention, input);
        let x = conv_base(graph, params, x)?;
        let x = adaptive_pool(graph, x, side);
        head(graph, params, x.clone(), (dense_count, pools)).map(|p| (x, p))
    };
    let (pooled, probabilities) = network(&mut graph, &mut params, INPUT_NAME)?;
    if let Some((name, _)) = params.0.peek() {
        return Err(format!("the model holds {name}, which VGG16 does not have"));
    }
    let s = size as usize;
    if header.mirror_tta {
        // The mean of the photo's and its mirror image's probabilities, as vggtune predicts:
        // the network's nodes again, on the same initializers.
        let mirrored = mirrored_input(&mut graph, s);
        params.2 = Some(0);
        graph.suffix = ".mirror";
        let (_, of_mirror) = network(&mut graph, &mut params, &mirrored)?;
        graph.suffix = "";
        let half = graph.initializer("mirror.half", &[1], Cow::Owned(vec![0.5]));
        let sum = graph.node("Add", &[&probabilities, &of_mirror], "mirror.sum", &[]);
        let mean = graph.node("Mul", &[&sum, &half], "mirror.mean", &[]);
        calibrated(&mut graph, &mean, header.temperature());
    } else {
        calibrated(&mut graph, &probabilities, header.temperature());
    }
    let features = graph.node("GlobalAveragePool", &[&pooled], "features.pool", &[]);
    let features = graph.node(
        "Flatten",
        &[&features],
        FEATURES_NAME,
        &[Attr::Int("axis", 1)],
    );
    if let Some(t) = typicality {
        nearest_distance(&mut graph, &features, t);
    }
    let batch = Dim::Named("batch");
    graph.value_info(
        11,
        INPUT_NAME,
        &[batch, Dim::Fixed(3), Dim::Fixed(s), Dim::Fixed(s)],
    );
    let classes = Dim::Fixed(header.classes.len());
    graph.value_info(12, OUTPUT_NAME, &[Dim::Named("batch"), classes]);
    let channels = Dim::Fixed(header.model.conv_channels()[12]);
    graph.value_info(12, FEATURES_NAME, &[Dim::Named("batch"), channels]);
    if typicality.is_some() {
        graph.value_info(12, DISTANCE_NAME, &[Dim::Named("batch")]);
    }
    Ok(graph)
}

/// The output probabilities from `probabilities`: calibrated with temperature `t`,
/// `softmax(ln(max(p, tiny)) / t)` as [`crate::calibration::calibrate`], or as they are.
fn calibrated(graph: &mut Graph<'_>, probabilities: &str, t: f32) {
    if t == 1.0 {
        graph.node("Identity", &[probabilities], OUTPUT_NAME, &[]);
        return;
    }
    let tiny = graph.initializer(
        "calibration.tiny",
        &[1],
        Cow::Owned(vec![f32::MIN_POSITIVE]),
    );
    let t = graph.initializer("calibration.temperature", &[1], Cow::Owned(vec![t]));
    let floor = graph.node("Max", &[probabilities, &tiny], "calibration.floor", &[]);
    let log = graph.node("Log", &[&floor], "calibration.log", &[]);
    let scaled = graph.node("Div", &[&log, &t], "calibration.scaled", &[]);
    graph.node("Softmax", &[&scaled], OUTPUT_NAME, &[Attr::Int("axis", 1)]);
}

/// The distance from the L2-normalised `features` to the k-th nearest training photo's, with
/// the training features as a constant: cosine similarities (`MatMul`), the k largest
/// (`TopK`), the smallest of those, then `sqrt(2 − 2·s)`, as [`crate::typical`] computes it.
fn nearest_distance(graph: &mut Graph<'_>, features: &str, t: &crate::typical::Typicality) {
    let (count, dim) = (t.summary.count, t.summary.dim);
    let vectors = t.vectors();
    let mut transposed = vec![0.0f32; count * dim];
    for (i, v) in vectors.chunks_exact(dim).enumerate() {
        for (j, &x) in v.iter().enumerate() {
            transposed[j * count + i] = x;
        }
    }
    let bank = graph.initializer("typicality.bank", &[dim, count], Cow::Owned(transposed));
    let tiny = graph.initializer("typicality.tiny", &[1], Cow::Owned(vec![1e-12]));
    let two = graph.initializer("typicality.two", &[1], Cow::Owned(vec![2.0]));
    let k = graph.int64_initializer("typicality.k", t.summary.k as i64);
    let norm = graph.node(
        "ReduceL2",
        &[features],
        "typicality.norm",
        &[Attr::Ints("axes", &[1]), Attr::Int("keepdims", 1)],
    );
    let norm = graph.node("Max", &[&norm, &tiny], "typicality.norm_floor", &[]);
    let unit = graph.node("Div", &[features, &norm], "typicality.unit", &[]);
    let similarity = graph.node("MatMul", &[&unit, &bank], "typicality.similarity", &[]);
    let nearest = graph.node_outputs(
        "TopK",
        &[&similarity, &k],
        &["typicality.nearest", "typicality.nearest_index"],
        &[Attr::Int("axis", 1), Attr::Int("largest", 1)],
    );
    let kth = graph.node(
        "ReduceMin",
        &[&nearest],
        "typicality.kth",
        &[Attr::Ints("axes", &[1]), Attr::Int("keepdims", 0)],
    );
    let twice = graph.node("Mul", &[&kth, &two], "typicality.twice", &[]);
    let gap = graph.node("Sub", &[&two, &twice], "typicality.gap", &[]);
    let gap = graph.node("Relu", &[&gap], "typicality.gap_floor", &[]);
    graph.node("Sqrt", &[&gap], DISTANCE_NAME, &[]);
}

/// Writes `model` (described by `header`) to `path` as an ONNX model, atomically.
pub fn export_onnx(
    model: &Vgg16,
    header: &BundleHeader,
    typicality: Option<&crate::typical::Typicality>,
    path: &Path,
) -> Result<(), String> {
    let mut tensors = torchvision_state_dict(model)?;
    let graph = build_graph(header, &mut tensors, typicality)?;
    let mut graph_head = Message::default();
    graph_head.string(2, "vggtune").string(
        10,
        &format!(
            "VGG16 fine-tuned by vggtune for {}",
            header.classes.join(", ")
        ),
    );
    let graph_len = graph_head.0.len() as u64 + graph.pieces.iter().map(Piece::len).sum::<u64>();

    let mut model_head = Message::default();
    model_head
        .int(1, IR_VERSION)
        .string(2, "vggtune")
        .string(3, crate::VERSION)
        .string(
            6,
            "VGG16 classifier; input and preprocessing are described in metadata_props",
        );
    let mut opset = Message::default();
    opset.string(1, "").int(2, OPSET);
    model_head.message(8, &opset);
    model_head.open(7, graph_len);
    let mut model_tail = Message::default();
    for (key, value) in metadata(header, typicality.map(|t| &t.summary)) {
        let mut entry = Message::default();
        entry.string(1, key).string(2, &value);
        model_tail.message(14, &entry);
    }
    let total = model_head.0.len() as u64 + graph_len + model_tail.0.len() as u64;
    if total > PROTOBUF_LIMIT {
        return Err(format!(
            "the model would be {total} bytes, past protobuf's 2 GB limit for one ONNX file"
        ));
    }
    crate::fsutil::write_atomic_with(path, |out| {
        out.write_all(&model_head.0)?;
        out.write_all(&graph_head.0)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for piece in &graph.pieces {
            match piece {
                Piece::Encoded(bytes) => out.write_all(bytes)?,
                Piece::Floats(values) => {
                    for chunk in values.chunks(1 << 14) {
                        buf.clear();
                        buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
                        out.write_all(&buf)?;
                    }
                }
            }
        }
        out.write_all(&model_tail.0)
    })
    .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_pool_windows_match_pytorchs() {
        // 7 → 7 is the identity; 1 → 7 copies; 3 → 7 overlaps (windows [0,1),[0,1),[0,2),[1,2),...).
        let id = adaptive_pool_matrix(7, 7);
        for i in 0..7 {
            for j in 0..7 {
                assert_eq!(id[i * 7 + j], f32::from(u8::from(i == j)));
            }
        }
        assert_eq!(adaptive_pool_matrix(1, 7), vec![1.0; 7]);
        let m = adaptive_pool_matrix(3, 7);
        assert_eq!(&m[6..9], &[0.5, 0.5, 0.0]);
        assert_eq!(&m[18..21], &[0.0, 0.0, 1.0]);
        for row in m.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn varints_are_protobufs() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0xAC, 0x02]);
        buf.clear();
        put_varint(&mut buf, u64::MAX);
        assert_eq!(buf.len(), 10);
    }

    #[test]
    fn block5_sees_the_input_halved_five_times() {
        assert_eq!(block5_side(224), 7);
        assert_eq!(block5_side(112), 3);
        assert_eq!(block5_side(32), 1);
        assert_eq!(block5_side(31), 0);
    }
}
