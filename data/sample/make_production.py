"""Build steel_production_SYNTHETIC_2018.csv: a SYNTHETIC tons-per-day series for the steel plant.

DAEWOO Steel publishes no production figures with its energy export, so the KPI energy per ton
needs an invented denominator. It is derived from the real energy so that it behaves plausibly
(lower output on light days): tons = max(0, (daily kWh - 600 kWh base load) / 35 kWh per ton),
times a seeded noise factor N(1, 0.04), rounded to 0.1 t. Days are Asia/Seoul local days, as the
export's own timestamps (end of each 15-minute interval; '0:00' closes the day before).
Not measured: never read it as DAEWOO's real output.
"""
from __future__ import annotations

import csv
import random
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED, BASE_KWH, KWH_PER_TON, NOISE = 12, 600.0, 35.0, 0.04


def daily_kwh() -> dict:
    totals = defaultdict(float)
    with open(HERE / "Steel_industry_data.csv", encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            end = datetime.strptime(row["date"], "%d/%m/%Y %H:%M")
            end += timedelta(days=1) if (end.hour, end.minute) == (0, 0) else timedelta(0)
            totals[(end - timedelta(minutes=15)).date()] += float(row["Usage_kWh"])
    return totals


def main() -> None:
    rng = random.Random(SEED)
    with open(HERE / "steel_production_SYNTHETIC_2018.csv", "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["date", "tons"])
        for day, kwh in sorted(daily_kwh().items()):
            tons = max(0.0, (kwh - BASE_KWH) / KWH_PER_TON) * rng.gauss(1.0, NOISE)
            writer.writerow([day.isoformat(), f"{tons:.1f}"])


if __name__ == "__main__":
    main()
