"""Reading the accepted on-disk layouts: torchvision files and Hugging Face parquet."""
