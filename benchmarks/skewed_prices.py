"""A synthetic table of house prices whose effects multiply (area, rooms, age, city, distance to the centre),
so the prices are skewed and their errors grow with them: what `data.target_transform: log` is for. Seeded,
so the same file each time. It is made up, and says nothing of real prices; docs/benchmarks.md compares the
regression recipe on it with and without the transform.

    python benchmarks/skewed_prices.py OUT.csv [--rows 3000]
"""

from __future__ import annotations

import argparse

import numpy as np


def write(path: str, rows: int) -> None:
    rng = np.random.default_rng(0)
    area = np.exp(rng.normal(4.3, 0.45, rows))  # m², median 74
    rooms = np.clip(np.round(area / 25 + rng.normal(0, 0.8, rows)), 1, 8)
    age = rng.uniform(0, 100, rows)
    distance = rng.exponential(6.0, rows)  # km to the centre
    cities = np.array(["paris", "lyon", "nice", "lille"])
    city = rng.integers(0, 4, rows)
    log_price = (8.6 + 0.9 * np.log(area) + 0.04 * rooms - 0.003 * age + np.array([0.9, 0.3, 0.5, 0.0])[city]
                 - 0.25 * np.log1p(distance) + 0.15 * np.log1p(distance) * (city == 0) + rng.normal(0, 0.2, rows))
    with open(path, "w") as f:
        f.write("area,rooms,age,distance,city,price\n")
        for i in range(rows):
            f.write(f"{area[i]:.1f},{rooms[i]:.0f},{age[i]:.0f},{distance[i]:.2f},{cities[city[i]]},"
                    f"{np.exp(log_price[i]):.0f}\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    write(args.out, args.rows)
