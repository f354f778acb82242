from dsrpipe.preprocessing.common import check_data, prepare, prepare_file, split_train_test, standardise

__all__ = ["check_data", "prepare", "prepare_file", "split_train_test", "standardise"]
