//! Serial formatting into a reused buffer, with and without a check digit: one number at a
//! time with `SerialFormatter::write`, and a run of consecutive numbers with `write_range`
//! (what a generated batch is made of).

use std::hint::black_box;

use common::serial::{CheckDigit, Format, SerialFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PER_ITER: u64 = 1_000;

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

criterion_group!(benches, write, write_range);
criterion_main!(benches);
