//! Serial formatting: `SerialFormatter::write` into a reused buffer, the generator's inner
//! loop, with and without a check digit.

use std::hint::black_box;

use common::serial::{CheckDigit, Format, SerialFormatter};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PER_ITER: u64 = 1_000;

fn write(c: &mut Criterion) {
    let mut group = c.benchmark_group("serial_write");
    group.throughput(Throughput::Elements(PER_ITER));
    for (name, check_digit) in [
        ("none", CheckDigit::None),
        ("gs1", CheckDigit::Gs1),
        ("luhn", CheckDigit::Luhn),
    ] {
        let formatter = SerialFormatter::new(
            "0111",
            Format {
                width: 8,
                check_digit,
            },
        );
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

criterion_group!(benches, write);
criterion_main!(benches);
