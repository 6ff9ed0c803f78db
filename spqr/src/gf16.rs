//! Arithmetic in GF(2^16), the field the erasure code works in.
//!
//! Elements are polynomials over GF(2) of degree below 16, stored as the bits of a `u16`, reduced
//! modulo x^16 + x^12 + x^3 + x + 1 (the modulus SPQR fixes; any other one would give other
//! chunks on the wire). Addition is XOR; multiplication is a carry-less product followed by a
//! reduction. A plain bit-by-bit implementation is fast enough here: a chunk needs a few hundred
//! products.

use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Sub};

/// The reduction polynomial x^16 + x^12 + x^3 + x + 1, with its x^16 bit.
const MODULUS: u32 = 0x1_100b;

/// One element of GF(2^16).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, PartialOrd, Ord, Hash)]
pub(crate) struct Gf16(pub(crate) u16);

impl Gf16 {
    /// The additive identity.
    pub(crate) const ZERO: Gf16 = Gf16(0);
    /// The multiplicative identity.
    pub(crate) const ONE: Gf16 = Gf16(1);

    /// The multiplicative inverse; zero has none, and maps to zero so that callers never panic
    /// (the erasure code only ever inverts products of differences of distinct points).
    pub(crate) fn inverse(self) -> Gf16 {
        // The multiplicative group has order 2^16 - 1, so a^(2^16 - 2) = a^-1.
        // Square-and-multiply over the exponent 0xfffe: fifteen one bits then a zero bit.
        let mut result = Gf16::ONE;
        let mut base = self;
        let mut exp: u32 = 0xfffe;
        while exp != 0 {
            if exp & 1 == 1 {
                result *= base;
            }
            base *= base;
            exp >>= 1;
        }
        result
    }
}

/// Carry-less product of two 16-bit polynomials, reduced modulo [`MODULUS`].
fn mul_reduce(a: u16, b: u16) -> u16 {
    let a = u32::from(a);
    let mut product: u32 = 0;
    for bit in 0..16 {
        if (b >> bit) & 1 == 1 {
            product ^= a << bit;
        }
    }
    // The product has degree at most 30; clear bits 30..=16 from the top down.
    for bit in (16..31).rev() {
        if (product >> bit) & 1 == 1 {
            product ^= MODULUS << (bit - 16);
        }
    }
    // Bits 16 and above are now clear, so the narrowing keeps every bit.
    (product & 0xffff) as u16
}

impl Add for Gf16 {
    type Output = Gf16;
    // Addition in characteristic 2 is XOR.
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn add(self, rhs: Gf16) -> Gf16 {
        Gf16(self.0 ^ rhs.0)
    }
}

impl AddAssign for Gf16 {
    #[allow(clippy::suspicious_op_assign_impl)]
    fn add_assign(&mut self, rhs: Gf16) {
        self.0 ^= rhs.0;
    }
}

impl Sub for Gf16 {
    type Output = Gf16;
    // In characteristic 2, subtraction and addition coincide.
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn sub(self, rhs: Gf16) -> Gf16 {
        Gf16(self.0 ^ rhs.0)
    }
}

impl Mul for Gf16 {
    type Output = Gf16;
    fn mul(self, rhs: Gf16) -> Gf16 {
        Gf16(mul_reduce(self.0, rhs.0))
    }
}

impl MulAssign for Gf16 {
    fn mul_assign(&mut self, rhs: Gf16) {
        self.0 = mul_reduce(self.0, rhs.0);
    }
}

impl Div for Gf16 {
    type Output = Gf16;
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn div(self, rhs: Gf16) -> Gf16 {
        self * rhs.inverse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(v: u16) -> Gf16 {
        Gf16(v)
    }

    #[test]
    fn small_products() {
        // x * x = x^2, and x^15 * x = x^16 = x^12 + x^3 + x + 1.
        assert_eq!(g(2) * g(2), g(4));
        assert_eq!(g(0x8000) * g(2), g(0x100b));
        assert_eq!(g(0) * g(0x1234), Gf16::ZERO);
        assert_eq!(g(1) * g(0x1234), g(0x1234));
    }

    #[test]
    fn every_nonzero_element_has_an_inverse() {
        for v in 1..=u16::MAX {
            assert_eq!(g(v) * g(v).inverse(), Gf16::ONE, "inverse of {v:#x}");
        }
        assert_eq!(Gf16::ZERO.inverse(), Gf16::ZERO);
    }

    #[test]
    fn multiplicative_group_is_cyclic_of_full_order() {
        // x generates the whole group iff the modulus is primitive; its order must be 2^16 - 1.
        let mut p = Gf16::ONE;
        for i in 1..=0xffffu32 {
            p *= g(2);
            if p == Gf16::ONE {
                assert_eq!(i, 0xffff);
            }
        }
        assert_eq!(p, Gf16::ONE);
    }

    proptest! {
        #[test]
        fn field_laws(a: u16, b: u16, c: u16) {
            let (a, b, c) = (g(a), g(b), g(c));
            prop_assert_eq!(a + b, b + a);
            prop_assert_eq!(a * b, b * a);
            prop_assert_eq!((a * b) * c, a * (b * c));
            prop_assert_eq!(a * (b + c), a * b + a * c);
            prop_assert_eq!(a - a, Gf16::ZERO);
            if b != Gf16::ZERO {
                prop_assert_eq!((a / b) * b, a);
            }
        }
    }
}
