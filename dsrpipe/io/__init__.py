from dsrpipe.io.timeseries import TimeSeries, load_series, read_table, read_timeseries, write_timeseries
from dsrpipe.io.atomic import atomic_path, write_json

__all__ = ["TimeSeries", "load_series", "read_table", "read_timeseries", "write_timeseries", "atomic_path", "write_json"]
