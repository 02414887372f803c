//! Serial formatting into a reused buffer, with and without a check digit: one number at a
//! time with `SerialFormatter::write`, and a run of consecutive numbers with `write_range`
//! (what a generated batch is made of), and a run in a random-order scheme.

use std::hint::black_box;

use common::serial::{CheckDigit, Format, Keyring, Order, SerialFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PER_ITER: u64 = 1_000;

/// The master key of the random-order benchmarks.
const KEY: &str = "a master key of the benchmarks";

const CHECK_DIGITS: [(&str, CheckDigit); 3] = [
    ("none", CheckDigit::None),
    ("gs1", CheckDigit::Gs1),
    ("luhn", CheckDigit::Luhn),
];

fn formatter(check_digit: CheckDigit) -> SerialFormatter {
    SerialFormatter::new(
        "0111",
        Format {
            width: 8,
            check_digit,
            ..Format::default()
        },
    )
}

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("serial_write");
    group.throughput(Throughput::Elements(PER_ITER));
    for (name, check_digit) in CHECK_DIGITS {
        let formatter = formatter(check_digit);
        let mut out = Vec::with_capacity(16 * PER_ITER as usize);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for n in 1_000_000..1_000_000 + PER_ITER {
                    formatter.write(black_box(n), &mut out);
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// The same 1,000 serials as `write`, as one range.
fn write_range(c: &mut Criterion) {
    let mut group = c.benchmark_group("serial_write_range");
    group.throughput(Throughput::Elements(PER_ITER));
    for (name, check_digit) in CHECK_DIGITS {
        let formatter = formatter(check_digit);
        let mut out = Vec::with_capacity(16 * PER_ITER as usize);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                formatter.write_range(black_box(1_000_000), PER_ITER, b"", &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// The same 1,000 numbers in a random-order scheme (FF1 under a test key): what a
/// random-order batch costs against the sequential `write_range`.
fn write_range_random(c: &mut Criterion) {
    let keys = Keyring::parse(Some(KEY)).expect("a key");
    let mut group = c.benchmark_group("serial_write_range_random");
    group.throughput(Throughput::Elements(PER_ITER));
    for (name, check_digit) in CHECK_DIGITS {
        let format = Format {
            order: Order::Random,
            key_id: keys.current().ok(),
            ..Format::new(8, check_digit)
        };
        let formatter = SerialFormatter::keyed("0111", format, &keys).expect("the key is there");
        let mut out = Vec::with_capacity(16 * PER_ITER as usize);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                formatter.write_range(black_box(1_000_000), PER_ITER, b"", &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

/// The permutation alone, 1,000 numbers at a time: widths 8 and 18 computed on 64-bit words,
/// 8 and 10 by table (as a task of more serials than the table's entries renders), and 19
/// computed on 128-bit words.
fn permute(c: &mut Criterion) {
    let keys = Keyring::parse(Some(KEY)).expect("a key");
    let id = keys.current().expect("a current key");
    let mut group = c.benchmark_group("ff1_apply_all");
    group.throughput(Throughput::Elements(PER_ITER));
    for (width, table) in [(8, false), (8, true), (10, true), (18, false), (19, false)] {
        let mut permutation = keys
            .permutation(id, "0111", width)
            .expect("a width FF1 takes");
        if table {
            permutation.tabulate();
        }
        let name = format!("{width}{}", if table { " by table" } else { "" });
        let mut numbers = vec![0u64; PER_ITER as usize];
        group.bench_function(name, |b| {
            b.iter(|| {
                for (slot, n) in numbers.iter_mut().zip(1_000_000..) {
                    *slot = n;
                }
                permutation.apply_all(black_box(&mut numbers));
                black_box(&numbers);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, write, write_range, write_range_random, permute);
criterion_main!(benches);
