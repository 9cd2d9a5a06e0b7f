"""Reports: a variable's daily totals as days 1-31 by January-December with monthly totals
underneath, and sums and means over grouped categories (docs/kpis.md).

Daily totals are per local day in the variable's own time zone, from agg.hourly (the hourly
sums of an energy variable; the hourly means of any other), so a 25-hour DST day is one cell
holding its 25 hours. Exports go to ``$BEMP_HOME/reports`` as CSV, XLSX and a PNG chart.
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from .forecasting_store import BLOCKING_RULES

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
TOTAL = "total"

DAILY_SQL = """
WITH blocked AS (
    SELECT variable_id, day FROM ops.commissioning_results
    WHERE day IS NOT NULL AND rule IN (SELECT unnest($rules))
    QUALIFY row_number() OVER (PARTITION BY variable_id, day, rule ORDER BY checked_at DESC) = 1
        AND NOT passed AND coalesce(verdict, 'fail') = 'fail'
)
SELECT timezone(v.timezone, h.hour)::DATE AS day, sum(coalesce(h.sum, h.mean)) AS value, count(*) AS hours,
       bool_or(b.variable_id IS NOT NULL) AS blocked, any_value(v.unit) AS unit
FROM agg.hourly h JOIN meta.variables v USING (variable_id)
LEFT JOIN blocked b ON b.variable_id = h.variable_id AND b.day = timezone($site_tz, h.hour)::DATE
WHERE h.variable_id = $variable AND year(timezone(v.timezone, h.hour)) = $year
GROUP BY ALL ORDER BY day
"""


class ReportError(ValueError):
    """A report that cannot be made (unknown variable, no data in the year); the message says which."""


def daily_totals(con: duckdb.DuckDBPyConnection, variable: str, year: int, site_tz: str) -> pd.DataFrame:
    known = con.execute("SELECT count(*) FROM meta.variables WHERE variable_id = ?", [variable]).fetchall()[0][0]
    if not known:
        raise ReportError(f"unknown variable {variable!r}; see `bemp summary` or bi.variables")
    return con.execute(DAILY_SQL, {"variable": variable, "year": year, "site_tz": site_tz,
                                   "rules": list(BLOCKING_RULES)}).df()


def day_by_month(daily: pd.DataFrame, variable: str, year: int) -> pd.DataFrame:
    """Rows 1..31 and ``total``, columns jan..dec; a cell is empty where the day has no data."""
    days = pd.to_datetime(daily["day"])
    grid = daily.assign(dom=days.dt.day, month=days.dt.month).pivot_table(
        index="dom", columns="month", values="value", aggfunc="sum")
    grid = grid.reindex(index=range(1, 32), columns=range(1, 13))
    grid.loc[32] = grid.sum(min_count=1)
    grid.columns = MONTHS
    table = grid.reset_index(drop=True)
    table.insert(0, "row_label", [str(d) for d in range(1, 32)] + [TOTAL])
    table.insert(0, "row_order", range(1, 33))
    unit = daily["unit"].iloc[0] if len(daily) else None
    return table.assign(variable_id=variable, year=year, unit=unit, blocked_days=int(daily["blocked"].sum()))


def export_day_by_month(table: pd.DataFrame, out_dir: Path, stem: str | None = None) -> list[Path]:
    """CSV, XLSX and PNG (monthly totals) of one variable-year table; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variable, year = table["variable_id"].iloc[0], int(table["year"].iloc[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or f"day_by_month_{variable}_{year}"
    sheet = table.set_index("row_label")[MONTHS]
    csv_path, xlsx_path, png_path = (out_dir / f"{stem}.{ext}" for ext in ("csv", "xlsx", "png"))
    sheet.to_csv(csv_path)
    with pd.ExcelWriter(xlsx_path, engine="openpyxl") as writer:
        sheet.to_excel(writer, sheet_name=str(year))
    totals = sheet.loc[TOTAL]
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.bar(MONTHS, totals.fillna(0).to_numpy())
    axes.set_title(f"{variable} {year}: monthly totals ({table['unit'].iloc[0] or ''})")
    figure.tight_layout()
    figure.savefig(png_path, dpi=90)
    plt.close(figure)
    return [csv_path, xlsx_path, png_path]


def category_summary(energy: pd.DataFrame, periods: list[str], site_excludes: list[str]) -> pd.DataFrame:
    """Sums and daily means of energy, CO2 and cost per period over three groupings; the site
    and site-carrier totals leave out ``site_excludes`` (export, generation, sub-meters)."""
    if energy.empty:
        return pd.DataFrame()
    days = pd.to_datetime(energy["day"])
    starts = {"day": days.dt.date, "month": days.dt.to_period("M").dt.start_time.dt.date,
              "year": days.dt.to_period("Y").dt.start_time.dt.date}
    groupings = {"site": ["site"], "site_category": ["site", "category"], "site_carrier": ["site", "carrier"]}
    out = []
    for period in periods:
        frame = energy.assign(period_start=starts[period])
        for name, keys in groupings.items():
            rows = frame if "category" in keys else frame[~frame["category"].isin(site_excludes)]
            per_day = rows.groupby(["period_start", *keys, "day"]).agg(
                energy=("energy_kwh", "sum"), co2=("co2_t", "sum"), cost=("cost_eur", lambda s: s.sum(min_count=1)),
                coverage=("coverage", "min"), blocked=("blocked", "any")).reset_index()
            summary = per_day.groupby(["period_start", *keys]).agg(
                days=("day", "nunique"), energy_kwh_sum=("energy", "sum"), energy_kwh_mean=("energy", "mean"),
                co2_t_sum=("co2", "sum"), cost_eur_sum=("cost", lambda s: s.sum(min_count=1)),
                cost_eur_mean=("cost", "mean"), coverage=("coverage", "mean"),
                blocked_days=("blocked", "sum")).reset_index()
            out.append(summary.assign(summary="energy", period=period, grouping=name))
    return pd.concat(out, ignore_index=True)
