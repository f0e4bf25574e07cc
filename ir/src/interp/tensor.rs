//! Tensor values as the reference interpreter holds them: every float dtype in
//! an `f64` array (f32 values are rounded to f32 after each op unless the
//! interpreter runs in f64), every integer dtype in an `i64` array (i32 values
//! wrap to 32 bits after each op), bools as bools.

use ndarray::{ArrayD, IxDyn};

use crate::types::{DType, Shape, TensorType};

/// The elements of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Float(ArrayD<f64>),
    Int(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// A tensor value: a dtype and its elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub data: Data,
}

impl Tensor {
    /// A float tensor of `dtype` (f32 values are rounded to f32).
    pub fn float(dtype: DType, array: ArrayD<f64>) -> Tensor {
        assert!(dtype.is_float(), "Tensor::float needs a float dtype, got {dtype}");
        let array = if dtype == DType::F32 { array.mapv(|x| x as f32 as f64) } else { array };
        Tensor { dtype, data: Data::Float(array) }
    }

    /// An integer tensor of `dtype` (i32 values wrap to 32 bits).
    pub fn int(dtype: DType, array: ArrayD<i64>) -> Tensor {
        assert!(dtype.is_int(), "Tensor::int needs an integer dtype, got {dtype}");
        let array = if dtype == DType::I32 { array.mapv(|x| x as i32 as i64) } else { array };
        Tensor { dtype, data: Data::Int(array) }
    }

    pub fn bool(array: ArrayD<bool>) -> Tensor {
        Tensor { dtype: DType::Bool, data: Data::Bool(array) }
    }

    /// An f32 tensor from a shape and row-major values.
    pub fn from_f32(shape: &[usize], values: &[f32]) -> Tensor {
        let array = ArrayD::from_shape_vec(IxDyn(shape), values.iter().map(|&x| f64::from(x)).collect())
            .expect("Tensor::from_f32: the shape must match the number of values");
        Tensor::float(DType::F32, array)
    }

    /// A tensor of `dtype` and concrete `shape` filled with zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        let dim = IxDyn(shape);
        match dtype {
            DType::Bool => Tensor::bool(ArrayD::from_elem(dim, false)),
            d if d.is_float() => Tensor::float(d, ArrayD::zeros(dim)),
            d => Tensor::int(d, ArrayD::zeros(dim)),
        }
    }

    pub fn shape(&self) -> &[usize] {
        match &self.data {
            Data::Float(a) => a.shape(),
            Data::Int(a) => a.shape(),
            Data::Bool(a) => a.shape(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tensor's type, with constant dimensions.
    pub fn tensor_type(&self) -> TensorType {
        TensorType::new(self.dtype, Shape::of(&self.shape().iter().map(|&d| d as u64).collect::<Vec<_>>()))
    }

    /// All elements as f64 in row-major order (bools as 0 and 1).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            Data::Float(a) => a.iter().copied().collect(),
            Data::Int(a) => a.iter().map(|&x| x as f64).collect(),
            Data::Bool(a) => a.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// The largest absolute difference to `other` relative to
    /// `max(1, |other|)`, elementwise; `None` when dtypes or shapes differ.
    pub fn max_relative_error(&self, other: &Tensor) -> Option<f64> {
        if self.dtype != other.dtype || self.shape() != other.shape() {
            return None;
        }
        let (a, b) = (self.to_f64_vec(), other.to_f64_vec());
        let mut worst = 0.0f64;
        for (x, y) in a.iter().zip(&b) {
            if x.is_nan() != y.is_nan() {
                return Some(f64::INFINITY);
            }
            if x == y || x.is_nan() {
                continue;
            }
            worst = worst.max((x - y).abs() / y.abs().max(1.0));
        }
        Some(worst)
    }
}
